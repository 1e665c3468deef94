// facepriv review: steps through a file's frames, shows its tracks, and sends edits.
// Plain JS, no build step. Every request carries the session token (header or query).
"use strict";
const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const canvas = $("frame-canvas"), ctx = canvas.getContext("2d");
const timeline = $("timeline"), tctx = timeline.getContext("2d");
let fileId = null, info = null, index = 0, playing = null, loading = false, drag = null, image = null;
// Bumped after each render: a frame URL seen before would be taken from the page's image cache.
let version = 0;

function url(path, params = {}) {
  const query = new URLSearchParams({ ...params, token });
  return `${path}?${query}`;
}
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Review-Token": token },
  };
  const response = await fetch(url(path), options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
function status(text) { $("status").textContent = text; }
function colour(track) {
  if (info && info.keep.includes(track)) return "#2e7d32";
  return `hsl(${(track * 67) % 360}, 80%, 50%)`;
}

async function loadFiles() {
  const data = await api("/api/files");
  const select = $("file");
  select.innerHTML = "";
  for (const f of data.files) {
    const option = document.createElement("option");
    option.value = f.id; option.textContent = `${f.name} (${f.frames} frames)`;
    select.appendChild(option);
  }
  if (data.files.length) await openFile(data.files[0].id);
}

async function openFile(id) {
  fileId = id;
  info = await api(`/api/files/${id}`);
  canvas.width = info.size[0]; canvas.height = info.size[1];
  $("slider").max = info.frames - 1;
  $("view-input").checked = !info.has_output;
  $("view-input").disabled = !info.has_output;
  showTracks(); drawTimeline(); showMarkers();
  await show(Math.min(index, info.frames - 1));
  status(`${info.tracks.length} track(s)`);
}

async function refresh() {
  info = await api(`/api/files/${fileId}`);
  showTracks(); drawTimeline(); showMarkers(); paint();
}

function show(i) {
  index = Math.max(0, Math.min(info.frames - 1, i));
  $("slider").value = index; $("frame-no").textContent = `${index} / ${info.frames - 1}`;
  const view = $("view-input").checked ? "input" : "output";
  loading = true;
  return new Promise((resolve) => {
    const next = new Image();
    const shown = `${index}:${version}`;
    next.onload = () => {
      image = next; loading = false; paint(); drawTimeline();
      canvas.dataset.shown = shown;  // which frame the canvas shows (tests wait for it)
      resolve();
    };
    next.onerror = () => { loading = false; resolve(); };
    next.src = url(`/api/files/${fileId}/frames/${index}`, { view, v: version });
  });
}

function paint() {
  if (image) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = Math.max(2, canvas.width / 400);
  if ($("show-boxes").checked && info) {
    for (const [x1, y1, x2, y2, track] of info.boxes[index] || []) {
      ctx.strokeStyle = colour(track);
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.fillStyle = colour(track);
      ctx.font = `${Math.max(12, canvas.width / 60)}px sans-serif`;
      ctx.fillText(`${track}${info.keep.includes(track) ? " kept" : ""}`, x1 + 2, Math.max(12, y1 - 4));
    }
  }
  if (drag) {
    ctx.strokeStyle = "#ff1744"; ctx.setLineDash([6, 4]);
    ctx.strokeRect(drag.x1, drag.y1, drag.x2 - drag.x1, drag.y2 - drag.y1);
    ctx.setLineDash([]);
  }
}

function showTracks() {
  const list = $("tracks");
  list.innerHTML = "";
  for (const t of info.tracks) {
    const row = document.createElement("div");
    const kept = info.keep.includes(t.id);
    row.className = `track${kept ? " kept" : ""}${t.added ? " added" : ""}`;
    row.dataset.track = t.id;
    const thumb = document.createElement("img");
    thumb.src = url(`/api/files/${fileId}/thumbnails/${t.id}`);
    thumb.alt = `track ${t.id}`; thumb.title = "go to this face";
    thumb.onclick = () => show(t.best_frame);
    const text = document.createElement("div");
    text.innerHTML = `<b style="color:${colour(t.id)}">track ${t.id}</b>${t.added ? " (added)" : ""}` +
      `<small>frames ${t.first}-${t.last} (${t.frames}), best score ${t.best.toFixed(2)}` +
      `${t.held ? `, held ${t.held}` : ""}${t.short ? ", short" : ""}</small>`;
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox"; box.className = "keep"; box.dataset.track = t.id; box.checked = kept;
    box.onchange = async () => {
      info.keep = (await api(`/api/files/${fileId}/keep`, { track: t.id, keep: box.checked })).keep;
      status("unsaved changes"); await refresh();
    };
    label.append(box, " keep visible");
    text.appendChild(label);
    if (t.added) {  // a box drawn here can be taken back; detected faces can only be kept
      const remove = document.createElement("button");
      remove.className = "remove"; remove.dataset.track = t.id; remove.textContent = "remove";
      remove.title = "Take back this drawn box on every frame";
      remove.onclick = async () => {
        await api(`/api/files/${fileId}/boxes/${t.id}/remove`, {});
        await refresh(); status(`removed track ${t.id} (unsaved)`);
      };
      text.appendChild(remove);
    }
    row.append(thumb, text);
    list.appendChild(row);
  }
}

function drawTimeline() {
  const rows = Math.max(info.tracks.length, 1), rowHeight = 12, top = 10;
  timeline.width = timeline.clientWidth || 900;
  timeline.height = top + rows * rowHeight + 4;
  const x = (frame) => (frame / Math.max(info.frames - 1, 1)) * (timeline.width - 1);
  tctx.clearRect(0, 0, timeline.width, timeline.height);
  tctx.fillStyle = "#d32f2f";
  for (const m of info.markers) tctx.fillRect(x(m.frame), 0, 1.5, top - 2);
  const row = new Map(info.tracks.map((t, i) => [t.id, i]));
  info.boxes.forEach((faces, frame) => {
    for (const face of faces) {
      tctx.fillStyle = colour(face[4]);
      tctx.fillRect(x(frame), top + row.get(face[4]) * rowHeight, Math.max(1, x(1)), rowHeight - 3);
    }
  });
  tctx.fillStyle = "#000";
  tctx.fillRect(x(index) - 1, 0, 2, timeline.height);
}

function showMarkers() {
  const shown = info.markers.slice(0, 200).map((m) =>
    `<a href="#" data-frame="${m.frame}">${m.frame}</a>: ${m.reasons.join(", ")}`);
  $("markers").innerHTML = `Frames worth a look (${info.markers.length}): ` + shown.join(" · ");
}

function framePoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width,
          (event.clientY - rect.top) * canvas.height / rect.height];
}

canvas.addEventListener("mousedown", (event) => {
  const [x, y] = framePoint(event);
  drag = { x1: x, y1: y, x2: x, y2: y };
});
canvas.addEventListener("mousemove", (event) => {
  if (!drag) return;
  [drag.x2, drag.y2] = framePoint(event); paint();
});
window.addEventListener("mouseup", async () => {
  if (!drag) return;
  const box = [drag.x1, drag.y1, drag.x2, drag.y2];
  drag = null;
  if (Math.abs(box[2] - box[0]) < 4 || Math.abs(box[3] - box[1]) < 4) { paint(); return; }
  status("following the box through the shot...");
  try {
    const added = await api(`/api/files/${fileId}/boxes`, {
      frame: index, box, back: Number($("back").value), forward: Number($("forward").value) });
    status(`added track ${added.track} on frames ${added.first}-${added.last} (unsaved)`);
    await refresh();
  } catch (error) { status(`error: ${error.message}`); paint(); }
});

$("timeline").addEventListener("click", (event) => {
  const rect = timeline.getBoundingClientRect();
  show(Math.round((event.clientX - rect.left) / rect.width * (info.frames - 1)));
});
$("markers").addEventListener("click", (event) => {
  if (event.target.dataset.frame) { event.preventDefault(); show(Number(event.target.dataset.frame)); }
});
$("slider").addEventListener("input", () => show(Number($("slider").value)));
$("first").onclick = () => show(0);
$("step-back").onclick = () => show(index - 1);
$("step-fwd").onclick = () => show(index + 1);
$("view-input").onchange = () => show(index);
$("show-boxes").onchange = paint;
$("file").onchange = () => openFile($("file").value);
$("play").onclick = () => {
  if (playing) { clearInterval(playing); playing = null; $("play").textContent = "Play"; return; }
  $("play").textContent = "Pause";
  playing = setInterval(() => {
    if (loading) return;  // never queue frames: play as fast as they decode, at most at the file's rate
    if (index >= info.frames - 1) { $("play").click(); return; }
    show(index + 1);
  }, 1000 / info.fps);
};
$("save").onclick = async () => {
  try { await api(`/api/files/${fileId}/save`, {}); status("saved"); await refresh(); }
  catch (error) { status(`error: ${error.message}`); }
};
$("render").onclick = async () => {
  try { await api(`/api/files/${fileId}/render`, {}); } catch (error) { status(`error: ${error.message}`); return; }
  const poll = setInterval(async () => {
    const s = await api("/api/render");
    if (s.state === "running") { status(`rendering ${s.done}/${s.total}`); return; }
    clearInterval(poll);
    status(s.state === "done" ? "rendered" : `render failed: ${s.error}`);
    if (s.state === "done") { version += 1; await refresh(); await show(index); }
  }, 300);
};
loadFiles().catch((error) => status(`error: ${error.message}`));

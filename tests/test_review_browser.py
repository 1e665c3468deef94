"""facepriv review in a real browser: Debian's headless Chromium driven by Selenium.

The page is opened from the address the command prints; the test sees the tracks, ticks
"keep visible" for the presenter, drags a box over a missed region, saves, renders, and
checks the rendered file's pixels. Its screenshot is the README's (docs/review.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_DIR
from frame_checks import crop, read_frames, ssim

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver; nothing is downloaded
SCREENSHOT = REPO_DIR / "docs" / "review.png"
DRAWN = (40, 330, 160, 470)  # frame pixels: green background, left of the presenter
SLIP = (560, 380, 680, 500)  # a second box, drawn by mistake and removed


def _browser_or_skip() -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    pytest.importorskip("uvicorn", reason="the review extra is not installed")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed: "
                    "apt-get install -y chromium chromium-driver")


@pytest.fixture()
def reviewed(tracked_sample: Path, tmp_path: Path) -> Path:
    """A copy of the main job's outputs whose tracks file points at the copy."""
    folder = tmp_path / "review"
    folder.mkdir()
    shutil.copy(tracked_sample / "peekingduck_wave.mp4", folder)
    data = json.loads((tracked_sample / "peekingduck_wave.mp4.tracks.json").read_text())
    data["output"] = str(folder / "peekingduck_wave.mp4")
    for entry in data["nodes"]:
        if "output_dir" in entry["settings"]:
            entry["settings"]["output_dir"] = str(folder)
    from facepriv.tracks_file import save_tracks

    save_tracks(folder / "peekingduck_wave.mp4.tracks.json", data)
    return folder


@pytest.mark.slow
def test_review_in_chromium_keeps_a_track_hides_a_drawn_box_and_renders(reviewed: Path,
                                                                         sample_video: Path) -> None:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a driver
    server = subprocess.Popen([sys.executable, "-m", "facepriv", "review", str(reviewed), "--no-browser"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = None
    try:
        match = re.search(r"open (http://127\.0\.0\.1:\d+/\?token=[\w-]+)", server.stdout.readline())
        assert match, "review printed no address"
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        wait = WebDriverWait(driver, 300)
        driver.get(match.group(1))
        rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".track"))
        tracks = json.loads((reviewed / "peekingduck_wave.mp4.tracks.json").read_text())
        presenter = max({f[4] for frame in tracks["frames"] for f in frame["faces"]},
                        key=lambda t: sum(f[4] == t for frame in tracks["frames"] for f in frame["faces"]))
        assert str(presenter) in [row.get_attribute("data-track") for row in rows]
        thumb = driver.find_element(By.CSS_SELECTOR, f'.track[data-track="{presenter}"] img')
        wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", thumb) > 0)

        driver.find_element(By.CSS_SELECTOR, f'input.keep[data-track="{presenter}"]').click()
        kept = (By.CSS_SELECTOR, f'.track.kept[data-track="{presenter}"]')
        wait.until(ready.presence_of_element_located(kept))

        for field, value in (("back", "0"), ("forward", "49")):
            element = driver.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        canvas = driver.find_element(By.ID, "frame-canvas")
        wait.until(lambda d: d.find_element(By.ID, "frame-no").text.startswith("0 /"))
        scale = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                      "return [r.width / arguments[0].width, r.height / arguments[0].height,"
                                      " r.width, r.height]", canvas)

        def offset(x: float, y: float) -> tuple[int, int]:  # from the canvas's centre, in CSS pixels
            return round(x * scale[0] - scale[2] / 2), round(y * scale[1] - scale[3] / 2)

        (ActionChains(driver).move_to_element_with_offset(canvas, *offset(*DRAWN[:2])).click_and_hold()
         .move_to_element_with_offset(canvas, *offset(*DRAWN[2:])).release().perform())
        wait.until(lambda d: "added track" in d.find_element(By.ID, "status").text)
        added = int(re.search(r"added track (\d+)", driver.find_element(By.ID, "status").text).group(1))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'.track.added[data-track="{added}"]'))

        # A slip: a second box, drawn and taken back with its row's remove button.
        (ActionChains(driver).move_to_element_with_offset(canvas, *offset(*SLIP[:2])).click_and_hold()
         .move_to_element_with_offset(canvas, *offset(*SLIP[2:])).release().perform())
        wait.until(lambda d: f"added track {added + 1}" in d.find_element(By.ID, "status").text)
        driver.find_element(By.CSS_SELECTOR, f'button.remove[data-track="{added + 1}"]').click()
        wait.until(lambda d: d.find_element(By.ID, "status").text == f"removed track {added + 1} (unsaved)")
        assert not driver.find_elements(By.CSS_SELECTOR, f'.track[data-track="{added + 1}"]')

        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text == "saved")
        saved = json.loads((reviewed / "peekingduck_wave.mp4.tracks.json").read_text())
        assert saved["keep"] == [presenter] and saved["added"] == [added]
        on = [i for i, frame in enumerate(saved["frames"]) if any(f[4] == added for f in frame["faces"])]
        assert on == list(range(50))

        driver.find_element(By.ID, "render").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text in ("rendered",)
                   or "failed" in d.find_element(By.ID, "status").text)
        assert driver.find_element(By.ID, "status").text == "rendered"
        driver.find_element(By.ID, "step-fwd").click()
        wait.until(lambda d: canvas.get_attribute("data-shown") == "1:1")  # frame 1 of the new output
        face = next(f for f in saved["frames"][1]["faces"] if f[4] == presenter)
        pixel = driver.execute_script(
            "const [c, x, y] = arguments;"
            "return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
            canvas, round((face[0] + face[2]) / 2), round((face[1] + face[3]) / 2))
        assert sum(pixel[:3]) > 150, f"the page shows the kept face unhidden after the render: {pixel}"
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)

    inputs, outputs = read_frames(sample_video), read_frames(reviewed / "peekingduck_wave.mp4")
    assert len(outputs) == len(inputs)
    box = next(f for f in saved["frames"][100]["faces"] if f[4] == presenter)
    assert ssim(crop(inputs[100], box), crop(outputs[100], box)) >= 0.8, "the kept presenter is visible"
    inner = (DRAWN[0] + 35, DRAWN[1] + 40, DRAWN[2] - 35, DRAWN[3] - 40)
    assert ssim(crop(inputs[10], inner), crop(outputs[10], inner)) < 0.5, "the drawn box is hidden"
    assert ssim(crop(inputs[100], inner), crop(outputs[100], inner)) >= 0.8, "and only on its frames"

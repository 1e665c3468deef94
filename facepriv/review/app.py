"""The review web app (Starlette): a token-guarded JSON and JPEG API and one static page.

Every request must carry the session's token (``?token=`` or the ``X-Review-Token``
header): without one it gets 401, with a wrong one 403. Only the Host names 127.0.0.1
and localhost are answered (a page elsewhere cannot reach the server through DNS
rebinding). Requests that change anything (keep, add, save, render) are POST only.
Files are named by their position in the library; static files by an exact name. Decoding
runs in Starlette's thread pool (frame sources lock themselves).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from facepriv.errors import FaceprivError
from facepriv.review.library import Library, ReviewFile
from facepriv.review.render_job import RenderJob

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
NO_CACHE = {"Cache-Control": "no-store"}


class TokenGuard:
    """ASGI middleware: 401 without the token, 403 with a wrong one."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            given = request.headers.get("x-review-token") or request.query_params.get("token")
            if not given or not secrets.compare_digest(given.encode(), self.token.encode()):
                status = 401 if not given else 403
                response = JSONResponse({"error": "a valid token is needed: open the address review printed"},
                                        status_code=status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(library: Library, token: str, config_path: str | None = None) -> Starlette:
    """The app over ``library``; ``token`` guards every request."""
    render = RenderJob(config_path)

    def chosen(request: Request) -> ReviewFile:
        found = library.get(request.path_params["file"])
        if found is None:
            raise LookupError
        return found

    async def page(request: Request) -> Response:
        html = (STATIC / "index.html").read_text(encoding="utf-8").replace("__TOKEN__", token)
        return Response(html, media_type=STATIC_TYPES[".html"], headers=NO_CACHE)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        allowed = {path.name: path for path in STATIC.iterdir() if path.suffix in STATIC_TYPES}
        if name not in allowed:  # exact names only: '../', encoded or not, never reaches a path
            return JSONResponse({"error": "no such file"}, status_code=404)
        return Response(allowed[name].read_bytes(), media_type=STATIC_TYPES[allowed[name].suffix])

    async def files(request: Request) -> Response:
        return JSONResponse({"files": [{"id": str(i), "name": f.data["name"], "frames": len(f.data["frames"])}
                                       for i, f in enumerate(library.files)], "skipped": library.skipped})

    async def summary(request: Request) -> Response:
        return JSONResponse(chosen(request).summary())

    async def frame(request: Request) -> Response:
        item = chosen(request)
        source = item.output if request.query_params.get("view", "output") == "output" else item.input
        if source is None:
            return JSONResponse({"error": "this file has no output in the reviewed folder"}, status_code=404)
        data = await run_in_threadpool(source.jpeg, request.path_params["index"])
        if data is None:
            return JSONResponse({"error": "no such frame"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers=NO_CACHE)

    async def thumbnail(request: Request) -> Response:
        data = await run_in_threadpool(chosen(request).thumbnail, request.path_params["track"])
        if data is None:
            return JSONResponse({"error": "no such track"}, status_code=404)
        return Response(data, media_type="image/jpeg")

    async def keep(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"keep": chosen(request).set_keep(int(body["track"]), bool(body["keep"]))})

    async def add(request: Request) -> Response:
        body = await request.json()
        # Decoding and following take a while: off the event loop, so the page stays answered.
        result = await run_in_threadpool(chosen(request).add_box, int(body["frame"]),
                                         [float(v) for v in body["box"]], int(body.get("back", 0)),
                                         int(body.get("forward", 0)))
        return JSONResponse(result)

    async def remove(request: Request) -> Response:
        return JSONResponse({"added": chosen(request).remove_added(request.path_params["track"])})

    async def save(request: Request) -> Response:
        return JSONResponse({"saved": str(chosen(request).save())})

    async def start_render(request: Request) -> Response:
        item = chosen(request)
        if item.dirty:
            item.save()  # render reads the file: what the page shows is what is rendered
        if not render.start(item):
            return JSONResponse({"error": "a render is running: wait for it"}, status_code=409)
        return JSONResponse(render.status())

    async def render_status(request: Request) -> Response:
        return JSONResponse(render.status(), headers=NO_CACHE)

    routes = [
        Route("/", page), Route("/static/{name}", static), Route("/api/files", files),
        Route("/api/files/{file}", summary), Route("/api/files/{file}/frames/{index:int}", frame),
        Route("/api/files/{file}/thumbnails/{track:int}", thumbnail),
        Route("/api/files/{file}/keep", keep, methods=["POST"]),
        Route("/api/files/{file}/boxes", add, methods=["POST"]),
        Route("/api/files/{file}/boxes/{track:int}/remove", remove, methods=["POST"]),
        Route("/api/files/{file}/save", save, methods=["POST"]),
        Route("/api/files/{file}/render", start_render, methods=["POST"]),
        Route("/api/render", render_status),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "no such file"}, status_code=404)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc) or "malformed request"}, status_code=400)

    handlers = {LookupError: not_found, FaceprivError: bad_request, ValueError: bad_request,
                KeyError: bad_request, TypeError: bad_request}
    return Starlette(routes=routes, exception_handlers=handlers, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"]),
        Middleware(TokenGuard, token=token),
    ])


def new_token() -> str:
    return secrets.token_urlsafe(24)


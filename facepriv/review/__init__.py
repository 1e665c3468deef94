"""``facepriv review DIR``: a local web page to review what a run hid, and correct it.

Needs the optional extra ``facepriv[review]`` (Starlette and uvicorn), imported only here,
when the command runs: ``import facepriv`` and ``facepriv --help`` stay light. The server
listens on 127.0.0.1 only, behind a random token that is part of the address it prints.
"""

from __future__ import annotations

from pathlib import Path

from facepriv.errors import ConfigError


def serve(folder: Path, port: int = 0, open_browser: bool = True, config_path: str | None = None) -> None:
    """Serve the review page for ``folder`` until Ctrl-C."""
    try:
        import uvicorn

        from facepriv.review.app import create_app, new_token
    except ImportError as err:
        raise ConfigError(f"facepriv review needs the review extra ({err.name} is missing): "
                          "pip install 'facepriv[review]'") from None
    import socket
    import webbrowser

    from facepriv.review.library import Library

    library = Library(folder)
    token = new_token()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)  # connections wait for the server from now on: the address works once printed
    except OSError as err:
        sock.close()
        reason = f"cannot listen on 127.0.0.1:{port} ({err.strerror}): pass another --port"
        raise ConfigError(reason) from None
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/?token={token}"
    print(f"reviewing {len(library.files)} file(s) in {library.folder}: open {url}", flush=True)
    for skipped in library.skipped:
        print(f"skipped: {skipped}", flush=True)
    if open_browser:
        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(create_app(library, token, config_path), log_level="warning"))
    server.run(sockets=[sock])

"""``annotate review DIR --serve``: the review page over a run's output folder, on the standard library's
threading HTTP server.

What is served: the page's three static files (a fixed list: no request path is ever joined to a folder),
and under ``/api/`` the faces of the run, looked up by face id in ``faces.csv``. Every ``/api/`` request
must carry the session's token in the ``X-Annotate-Token`` header; the printed address carries it after
``#``, where the page reads it (a fragment is never sent to a server, logged or passed on as a referrer).
Another web page cannot set that header without a CORS preflight that this server never answers, nor
read the token. The folder is held with the run lock for as long as the server runs.
"""
from __future__ import annotations

import hmac
import json
import re
import secrets
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ..images import ImageError
from ..lock import REVIEW, lock_output
from . import photos
from .edits import BadEdit, Conflict, Faces, NotFound
from .refitting import Refitter

TOKEN_HEADER = "X-Annotate-Token"
MAX_BODY = 64 * 1024  # a save or refit is about 2 KB
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
FACE = re.compile(r"/api/faces/([0-9a-f]{16})(/photo|/thumb|/refit)?")
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'"}


class ReviewServer(ThreadingHTTPServer):
    """The HTTP server, with the faces under review and the session's token."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], faces: Faces, token: str):
        super().__init__(address, Handler)
        self.faces, self.token = faces, token
        self.refitter = Refitter(faces)


class Handler(BaseHTTPRequestHandler):
    """Routes: the static files, and the faces API (token required)."""

    server: ReviewServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def log_message(self, format: str, *args) -> None:  # quiet: the terminal shows the address and errors
        pass

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if path in STATIC and method == "GET":
                return self._static(*STATIC[path])
            if path == "/favicon.ico":
                return self._send(HTTPStatus.NO_CONTENT, "image/x-icon", b"")
            if not path.startswith("/api/"):
                return self._error(HTTPStatus.NOT_FOUND, "not found")
            if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(), self.server.token.encode()):
                return self._error(HTTPStatus.FORBIDDEN, f"no valid {TOKEN_HEADER} header: open the address "
                                   "printed by annotate review --serve")
            self._api(method, path)
        except NotFound as e:
            self._error(HTTPStatus.NOT_FOUND, str(e))
        except BadEdit as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
        except Conflict as e:
            self._error(HTTPStatus.CONFLICT, str(e))
        except (OSError, ImageError, ValueError) as e:
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}")

    def _api(self, method: str, path: str) -> None:
        faces = self.server.faces
        if path == "/api/faces" and method == "GET":
            return self._json({"faces": faces.listing()})
        match = FACE.fullmatch(path)
        if not match:
            return self._error(HTTPStatus.NOT_FOUND, "not found")
        face, part = match.groups()
        if method == "POST" and not part:
            edit = self._body()
            return self._json(faces.save(face, str(edit.get("base")), str(edit.get("action")), edit.get("points")))
        if method == "POST" and part == "/refit":
            return self._json(self.server.refitter.refit(face, self._body()))
        if method != "GET" or part == "/refit":
            return self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed here")
        if part == "/photo":
            return self._send(HTTPStatus.OK, "image/jpeg", photos.photo(faces.row(face)["input_path"]))
        if part == "/thumb":
            state = faces.face(face)["version"]
            return self._send(HTTPStatus.OK, "image/jpeg",
                              photos.thumbnail(faces.out, tuple(faces.row(face).items()), state))
        self._json(faces.face(face))

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            raise BadEdit(f"a save or refit is a JSON object of at most {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, an integer of over 4,300 digits, too deep
            body = None
        if not isinstance(body, dict):
            raise BadEdit("a save is a JSON object (base, action, points); a refit one with points, placed")
        return body

    def _static(self, name: str, kind: str) -> None:
        self._send(HTTPStatus.OK, kind, resources.files(__package__).joinpath("static", name).read_bytes())

    def _json(self, value: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, "application/json", json.dumps(value).encode())

    def _error(self, status: HTTPStatus, message: str) -> None:
        self.close_connection = True  # a request body left unread must not be taken for the next request
        self._json({"error": message}, status)

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        for name, value in {**HEADERS, "Content-Type": kind, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(out: Path, worst: int | None = None, host: str = "127.0.0.1", port: int = 8765,
          echo: Callable[[str], None] = print) -> None:
    """Serve the review page over the run in ``out`` until interrupted, holding its run lock.

    Raises OutputBusy (a run or another review server holds ``out``), ReviewError (nothing to review)
    or OSError (the port cannot be had).
    """
    with lock_output(out, REVIEW, advice="wait for it to end (or stop it) and start the review again"):
        faces = Faces(out, worst)
        token = secrets.token_urlsafe(24)
        try:
            server = ReviewServer((host, port), faces, token)
        except OSError as e:
            raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port") from None
        checked = sum(bool(f["checked"]) for f in faces.listing())
        echo(f"reviewing {len(faces.order)} faces of {out} ({checked} checked); open in a browser:\n"
             f"  http://{host}:{server.server_port}/#token={token}\n"
             "Ctrl-C stops the server; every save is already on disk.")
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()

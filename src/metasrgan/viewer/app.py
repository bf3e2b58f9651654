"""The viewer's app assembly: the routers, the page, and a JSON answer for every error.

Every error a client can cause answers ``{"error": message}`` with a 4xx status (a
validation error names the parameter); anything unexpected is a 500 with the exception's
type only, never a traceback, and the server carries on.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from metasrgan.viewer import browser_compute, routes
from metasrgan.viewer.jobs import Busy
from metasrgan.viewer.server import NotLoaded
from metasrgan.viewer.volumes import ScanError, ScanTooLarge

STATIC = Path(str(resources.files("metasrgan") / "viewer" / "static"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install(app: FastAPI) -> None:
    """The routers, the page, and JSON error answers for everything that can go wrong."""
    app.include_router(routes.router)
    app.include_router(browser_compute.router)

    @app.exception_handler(ScanError)
    async def _scan_error(_request, err: ScanError):
        return _error(413 if isinstance(err, ScanTooLarge) else 400, str(err))

    @app.exception_handler(NotLoaded)
    async def _not_loaded(_request, err: NotLoaded):
        return _error(404, str(err.args[0]))

    @app.exception_handler(Busy)
    async def _busy(_request, err: Busy):
        return _error(503, str(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, err: RequestValidationError):
        parts = []
        for e in err.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def _http(_request, err: HTTPException):
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request, err: Exception):
        return _error(500, f"internal error ({type(err).__name__}); the server carries on")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

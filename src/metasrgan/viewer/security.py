"""The viewer has no login, so it answers only this machine's own pages.

- ``Host`` must name an allowed host (loopback by default): a web page that rebinds its
  DNS name to 127.0.0.1 still sends its own name, and is refused (DNS rebinding).
- A request with an ``Origin`` must come from the viewer's own origin, and one with
  ``Sec-Fetch-Site`` must be same-origin or typed by the user: another site's page cannot
  drive it, even with "simple" requests (forms, ``<img>``) that browsers send unasked.
- State-changing requests (POST, PUT, PATCH, DELETE) need a JSON content type or the
  per-server token (``X-Metasrgan-Token``, given by ``GET /api/info``): both force a CORS
  preflight that the viewer never grants, so a cross-site form or ``text/plain`` POST fails.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "x-metasrgan-token"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def host_name(netloc: str) -> str:
    """``"[::1]:8000"`` -> ``"::1"``; ``"localhost:80"`` -> ``"localhost"``."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


class LocalOnly:
    """ASGI middleware enforcing the three rules above; refusals are JSON ``403``."""

    def __init__(self, app, allowed_hosts: tuple[str, ...], token: str):
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.problem(scope["method"], headers, scope.get("path", ""))
        if problem is None:
            return await self.app(scope, receive, send)
        body = json.dumps({"error": problem}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def problem(self, method: str, headers: dict[str, str], path: str = "/api") -> str | None:
        host = headers.get("host", "")
        if host_name(host) not in self.allowed:
            names = ", ".join(sorted(self.allowed))
            return (
                f"host {host!r} is not allowed: the viewer answers {names} only "
                "(start it with --allow-host to add a name)"
            )
        fetch_site = headers.get("sec-fetch-site")  # sent by browsers on every request
        api = path.startswith("/api")  # the page itself may be linked from anywhere
        if api and fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return f"requests from other sites (Sec-Fetch-Site: {fetch_site}) are not allowed"
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.lower():
                return f"requests from other sites ({origin}) are not allowed"
        if method in STATE_CHANGING:
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            given = headers.get(TOKEN_HEADER, "")
            if kind != "application/json" and not secrets.compare_digest(given, self.token):
                return (
                    f"{method} needs Content-Type: application/json or the viewer's token in "
                    f"{TOKEN_HEADER} (see GET /api/info)"
                )
        return None

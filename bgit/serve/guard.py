"""The checks in front of every request (a plain ASGI middleware, so streaming is untouched).

- API key: when one is set, every request needs ``Authorization: Bearer KEY`` or the session
  cookie the web page's login sets (an HMAC of the key, never the key itself); compared in
  constant time. Wrong or missing: 401 in OpenAI's error shape; ``GET /`` shows a login form.
- Loopback servers answer only Host headers that name a loopback address, so a web page
  elsewhere cannot reach them through DNS rebinding.
- A request with an ``Origin`` header from another site is refused (403): a browser page
  elsewhere must not use this server's model through its visitor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from bgit.serve.errors import APIError

COOKIE = "bgit_session"
LOGIN_PATH = "/bgit/login"


def is_loopback(host: str) -> bool:
    import ipaddress

    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def session_token(api_key: str) -> str:
    return hmac.new(api_key.encode(), b"bgit serve web session", hashlib.sha256).hexdigest()


class Guard:
    def __init__(self, app, api_key: str | None, loopback: bool) -> None:
        self.app, self.api_key, self.loopback = app, api_key, loopback
        self.state = getattr(app, "state", None)
        self._bearer = api_key.encode() if api_key else None
        self._session = session_token(api_key).encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.loopback and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            return await _refuse(send, 403, f"Host {host!r} is not a loopback address; this server answers "
                                 "only requests addressed to 127.0.0.1 or localhost.", "forbidden_host")
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != host:
            return await _refuse(send, 403, f"Cross-origin requests are refused (Origin {origin}).",
                                 "forbidden_origin")
        if self.api_key is None:
            return await self.app(scope, receive, send)
        if scope["path"] == LOGIN_PATH and scope["method"] == "POST":
            return await self._login(receive, send)
        problem = self._check(headers)
        if problem is None:
            return await self.app(scope, receive, send)
        if scope["path"] == "/" and scope["method"] == "GET":
            return await _login_page(send, None)
        return await _refuse(send, 401, problem, "invalid_api_key")

    def _check(self, headers: dict) -> str | None:
        """None when the request carries the key (or the page's session cookie)."""
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._bearer):
                return None
            return "Incorrect API key provided."
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is as good as none
            cookie = SimpleCookie()
        if COOKIE in cookie and hmac.compare_digest(cookie[COOKIE].value.encode(), self._session):
            return None
        return ("You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")

    async def _login(self, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > 65536:
                break
        key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0]
        if not hmac.compare_digest(key.encode(), self._bearer):
            return await _login_page(send, "Wrong API key.")
        cookie = f"{COOKIE}={self._session.decode()}; HttpOnly; SameSite=Strict; Path=/"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def _refuse(send, status: int, message: str, code: str) -> None:
    body = json.dumps(APIError(status, message, code=code).to_json()).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _login_page(send, problem: str | None) -> None:
    from html import escape

    note = f'<p class="error">{escape(problem)}</p>' if problem else ""
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>bgit serve: sign in</title></head>"
            f"<body style='font-family:sans-serif;max-width:30em;margin:4em auto'>"
            f"<h1>bgit serve</h1><p>This server needs its API key.</p>{note}"
            f"<form method='post' action='{LOGIN_PATH}'><input type='password' name='key' autofocus "
            f"placeholder='API key'> <button type='submit'>Sign in</button></form></body></html>").encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

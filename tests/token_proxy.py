"""A token-checking reverse proxy for tests: what a deployment puts in front of ``chroma run``
(Chroma 1.x has no server-side authentication of its own).

Every request must carry ``Authorization: Bearer TOKEN`` or ``X-Chroma-Token: TOKEN``; any other
gets 401 and never reaches the server. It counts what it refused and forwarded, so a test can
tell that nothing was stored without the token. Optionally it serves TLS (``certfile``/``keyfile``).
"""

from __future__ import annotations

import hmac
import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# Not forwarded: hop-by-hop headers, and the token itself (Chroma never sees it, as with nginx).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "host",
    "content-length",
    "authorization",
    "x-chroma-token",
}


class TokenProxy:
    """``with TokenProxy(upstream_port, token) as proxy:`` serves on ``proxy.url`` (127.0.0.1)."""

    def __init__(
        self, upstream_port: int, token: str, *, certfile: str | None = None, keyfile: str | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.token = token
        self.refused = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet in test output
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not proxy.allows(self.headers.get("Authorization"), self.headers.get("X-Chroma-Token")):
                    with proxy._lock:
                        proxy.refused += 1
                    self._reply(401, b'{"error":"Unauthorized","message":"missing or wrong token"}', {})
                    return
                with proxy._lock:
                    proxy.forwarded += 1
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    passed = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                    self._reply(response.status, payload, passed)
                finally:
                    upstream.close()

            def _reply(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://localhost:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def allows(self, authorization: str | None, chroma_token: str | None) -> bool:
        """Whether a request's headers carry the token (compared in constant time)."""
        offered = chroma_token or (authorization or "").removeprefix("Bearer ").strip()
        return bool(offered) and hmac.compare_digest(offered.encode(), self.token.encode())

    def __enter__(self) -> TokenProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

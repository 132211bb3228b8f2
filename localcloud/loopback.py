"""Tiny helpers for the loopback HTTP servers."""
from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Server:
    def __init__(self, handler_cls, tls_context=None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if tls_context else "http"
        if tls_context:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name=handler_cls.__name__)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(handler_cls, tls_context=None) -> Server:
    return Server(handler_cls, tls_context)


# Hop-by-hop headers, and the two a relay recomputes (Host, Content-Length): never forwarded as they came.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "host",
               "content-length"}


class RelayHandler(BaseHTTPRequestHandler):
    """A loopback front that decides on a request, then forwards it to `target` (the Cloud Storage fronts): reading
    a body (chunked or sized), answering, and forwarding with a resumable session's Location pointed back here."""
    protocol_version = "HTTP/1.1"
    target: urllib.parse.SplitResult

    def log_message(self, *a):
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in HOP_HEADERS:
                self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status != 304:
            self.wfile.write(body)

    def _forward(self, body: bytes, drop: frozenset[str] = frozenset()):
        """The request sent on to `target` (without hop headers and `drop`): its response, with a resumable
        session's Location (which names the hop behind this front) pointed back here, to whoever the client
        called. Returns (response, headers, body)."""
        target = self.target
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=300)
        try:
            conn.request(self.command, self.path, body=body or None,
                         headers={k: v for k, v in self.headers.items()
                                  if k.lower() not in HOP_HEADERS and k.lower() not in drop})
            resp = conn.getresponse()
            data = resp.read()
            headers = resp.getheaders()
        finally:
            conn.close()
        here = f"http://{self.headers.get('Host') or '%s:%s' % self.server.server_address[:2]}"
        origin = f"{target.scheme}://{target.netloc}"
        return resp, [(k, v.replace(origin, here, 1) if k.lower() == "location" else v) for k, v in headers], data


"""Tiny helpers for the loopback HTTP servers."""
from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


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

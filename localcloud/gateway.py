"""The local cloud's only way out of loopback: an HTTPS proxy (CONNECT) that reaches the Google hosts the local
cloud serves itself, and refuses every other destination.

Why it exists: google-auth looks up the Regional Access Boundary of metadata-server credentials at a hard-coded
Google host (`https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/<email>/allowedLocations`; no
endpoint setting reaches it). Clients reach that host through the standard proxy settings (`HTTPS_PROXY`, with
`NO_PROXY` for loopback), which the env file sets; this proxy tunnels the connection to the local REST service,
which answers it over TLS with a certificate for that name from the local CA. Nothing is resolved in DNS and no
connection leaves loopback; a CONNECT to any other host is answered 403 and recorded in `refused`, which tests
assert stays empty.
"""
from __future__ import annotations

import select
import socket
from http.server import BaseHTTPRequestHandler

from localcloud.loopback import serve

# Google hosts the local cloud serves: host -> the local service that answers for it.
SERVED_HOSTS = ("iamcredentials.googleapis.com",)


def start_gateway(rest_port: int):
    refused: list[str] = []

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _refuse(self, what: str):
            refused.append(what)
            body = (f"hfgate local cloud: {what} is outside loopback and not served locally\n").encode()
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_CONNECT(self):
            host, _, port = self.path.rpartition(":")
            if host not in SERVED_HOSTS or port != "443":
                return self._refuse(self.path)
            upstream = socket.create_connection(("127.0.0.1", rest_port))
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            conns = [self.connection, upstream]
            try:
                while True:
                    ready, _, broken = select.select(conns, [], conns, 60)
                    if broken or not ready:
                        break
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (upstream if s is self.connection else self.connection).sendall(data)
            except OSError:          # either side went away: the tunnel ends, as a proxy's would
                pass
            finally:
                upstream.close()
                self.close_connection = True

        def _plain(self):
            self._refuse(f"{self.command} {self.path}")

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _plain

    server = serve(Gateway)
    server.refused = refused
    return server


def proxy_env(gateway) -> dict[str, str]:
    """The standard proxy settings (upper and lower case: clients read either): loopback goes direct."""
    loopback = "127.0.0.1,localhost,::1"
    url = gateway.url
    return {"HTTPS_PROXY": url, "https_proxy": url, "NO_PROXY": loopback, "no_proxy": loopback}


__all__ = ["SERVED_HOSTS", "proxy_env", "start_gateway"]

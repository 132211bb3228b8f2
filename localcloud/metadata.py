"""The GCE metadata server, one listener per identity (a job's VM has exactly one service account).

google-auth finds it through GCE_METADATA_HOST / GCE_METADATA_IP; like the real one it answers only requests that
carry `Metadata-Flavor: Google`, and every answer carries that header back.
"""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from localcloud.loopback import serve
from localcloud.state import Identities


def start_metadata(identities: Identities, member: str, project_id: str, project_number: str):
    email = member.split(":", 1)[1]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: the cloud logs requests it cares about itself
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "":
                return self._send(200, "ok", "text/plain")  # google-auth's GCE ping
            if self.headers.get("Metadata-Flavor") != "Google":
                return self._send(403, "Missing required header: Metadata-Flavor", "text/plain")
            sa = "/computeMetadata/v1/instance/service-accounts"
            routes = {
                f"{sa}/default/email": email, f"{sa}/{email}/email": email,
                "/computeMetadata/v1/project/project-id": project_id,
                "/computeMetadata/v1/project/numeric-project-id": project_number,
            }
            if path in routes:
                return self._send(200, routes[path], "application/text")
            if path in (f"{sa}/default", f"{sa}/{email}") or path == sa:
                body = {"aliases": ["default"], "email": email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
                if path == sa:
                    body = {"default": body, email: body}
                return self._send(200, json.dumps(body), "application/json")
            if path in (f"{sa}/default/token", f"{sa}/{email}/token"):
                token = identities.issue(member)
                return self._send(200, json.dumps({"access_token": token, "expires_in": 3599,
                                                   "token_type": "Bearer"}), "application/json")
            if path.endswith("/scopes"):
                return self._send(200, "https://www.googleapis.com/auth/cloud-platform", "application/text")
            return self._send(404, "not found", "text/plain")

        def _send(self, status: int, body: str, ctype: str):
            data = body.encode()
            self.send_response(status)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return serve(Handler)

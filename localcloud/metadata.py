"""The GCE metadata server, one listener per identity (a job's VM has exactly one service account).

google-auth finds it through GCE_METADATA_HOST / GCE_METADATA_IP; like the real one it answers only requests that
carry `Metadata-Flavor: Google`, and every answer carries that header back.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from localcloud.loopback import serve
from localcloud.state import Identities


def _socket_owner(client_port: int, server_port: int) -> int | None:
    """The process holding the loopback TCP connection from `client_port` to `server_port` (/proc/net/tcp, then
    the process whose descriptor is that socket), or None."""
    want_local, want_remote = f"0100007F:{client_port:04X}", f"0100007F:{server_port:04X}"
    inode = ""
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1] == want_local and cols[2] == want_remote:
                    inode = cols[9]
                    break
    except OSError:
        return None
    if not inode or inode == "0":
        return None
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:
            continue
    return None


def job_of_process(pid: int | None) -> str | None:
    """The local Vertex AI job a process (or any process above it) was started for: its HFGATE_LOCAL_JOB tag."""
    seen = set()
    while pid and pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"HFGATE_LOCAL_JOB="):
                        return item.split(b"=", 1)[1].decode()
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    return None


def start_metadata(identities: Identities, member: str, project_id: str, project_number: str,
                   job_account: Callable[[str], str | None] | None = None):
    """`job_account(job_id)`: the service account a local job runs as. On Google a job's VM reaches only its own
    metadata server; here every listener is on loopback, so a token request from a job's process (found by its
    connection) is refused unless that job runs as this listener's account."""
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
                if job_account is not None:
                    job = job_of_process(_socket_owner(self.client_address[1], self.server.server_address[1]))
                    if job is not None and job_account(job) != email:
                        return self._send(403, f"This metadata server serves {email}; job {job} runs as"
                                               f" {job_account(job)} and may reach only its own.", "text/plain")
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

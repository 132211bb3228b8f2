"""Start and stop the whole local cloud, seeded from seed.toml and the stacks' own names and grants."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import grpc

from localcloud import secretmanager, vertex
from localcloud.gcs import GcsEmulator
from localcloud.hub import HubState, start_hub
from localcloud.loopback import serve
from localcloud.metadata import start_metadata
from localcloud.state import Grants, Identities, Seed
from stacks.config import load_settings
from stacks.contract import outputs_from_settings
from stacks.naming import names_for


def _fake_weights(kind: str, name: str) -> dict[str, bytes]:
    """Small synthetic repo contents (real models are published by the demo and tests that need them)."""
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "name": name}).encode()
    weights = os.urandom(4096)
    if kind == "pickle":
        return {"config.json": config, "pytorch_model.bin": weights, "README.md": b"---\nlicense: apache-2.0\n---\n"}
    if kind == "dataset":
        rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                  {"role": "assistant", "content": f"a{i}"}]}) for i in range(8))
        return {"train.jsonl": rows.encode(), "README.md": b"---\nlicense: cc-by-4.0\n---\n"}
    return {"config.json": config, "model.safetensors": weights, "tokenizer.json": b"{}",
            "README.md": b"---\nlicense: apache-2.0\n---\n"}


class LocalCloud:
    def __init__(self, seed_path: Path | None = None, state_dir: Path | None = None) -> None:
        self.seed = Seed.load(seed_path)
        self.settings = load_settings(self.seed.raw["project"]["env"])
        s = self.settings
        self.project_id, self.region = s.project_id, s.region
        self.project_number = s.project_number or "100000000001"
        self.names = names_for(s)
        self.outputs = outputs_from_settings(s, self.project_number)
        self._own_state = state_dir is None
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="localcloud-"))
        self.identities = Identities()
        self.grants = Grants()
        self.hub_state = HubState()
        self.hub_tokens: dict[str, str] = {}
        self._servers = []
        self._metadata_by_member: dict[str, object] = {}
        self.started = False

    # principals --------------------------------------------------------------------------------------------------
    @property
    def trainer(self) -> str:
        return f"serviceAccount:{self.outputs.trainer_email}"

    @property
    def submitter(self) -> str:
        return f"serviceAccount:{self.outputs.submitter_email}"

    @property
    def admin(self) -> str:
        return self.seed.raw["principals"][0]["member"]

    def _seed_grants(self) -> None:
        """The stacks' grants, by the stacks' names: accessor on the one secret for trainer and submitter,
        aiplatform.user and act-as on the trainer for the submitter."""
        secret = f"secret:{self.names.secret_id}"
        self.grants.add(self.trainer, "roles/secretmanager.secretAccessor", secret)
        self.grants.add(self.submitter, "roles/secretmanager.secretAccessor", secret)
        self.grants.add(self.submitter, "roles/aiplatform.user", "project")
        self.grants.add(self.submitter, "roles/iam.serviceAccountUser", self.trainer)
        self.grants.add(self.trainer, "roles/logging.logWriter", "project")
        for p in self.seed.raw.get("principals", []):
            for role in p["roles"]:
                self.grants.add(p["member"], role, "*" if "secretmanager" in role else "project")

    def _seed_hub(self) -> None:
        hub = self.seed.raw.get("hub", {})
        for u in hub.get("users", []):
            self.hub_state.add_user(u["name"], u.get("orgs"))
        for t in hub.get("tokens", []):
            token = self.hub_state.add_token(t["owner"], t["role"], t["name"],
                                             can_read_gated=t.get("can_read_gated", False),
                                             scoped=t.get("scoped", []), revoked=t.get("revoked", False))
            self.hub_tokens[t["name"]] = token.value
        for r in hub.get("repos", []):
            self.hub_state.add_repo(r["id"], _fake_weights(r.get("kind", "safetensors"), r["id"]),
                                    type=r.get("type", "model"), private=r.get("private", False),
                                    gated=r.get("gated", False), members=set(r.get("members", [])),
                                    access=dict(r.get("access", {})))

    # lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> "LocalCloud":
        t0 = time.time()
        self._seed_grants()
        self._seed_hub()
        self.gcs = GcsEmulator(self.project_id)
        self.gcs.start()
        for bucket in (self.names.staging_bucket, self.names.artifacts_bucket, self.names.logs_bucket):
            self.gcs.create_bucket(bucket, self.region)

        self.secrets = secretmanager.SecretStore(self.project_id, self.project_number, self.grants, self.identities)
        from google.cloud.secretmanager_v1 import types as sm
        self.secrets.create_secret(self.admin, f"projects/{self.project_id}", self.names.secret_id, sm.Secret(
            replication=sm.Replication(user_managed=sm.Replication.UserManaged(
                replicas=[sm.Replication.UserManaged.Replica(location=loc) for loc in self.settings.replicas])),
            labels={"managed-by": "hfgate"}))

        self.hub, self.cdn = start_hub(self.hub_state)
        self.hub_state.job_runner = self._run_hf_job
        self.rest = serve(_rest_handler(self))
        self.metadata = self.metadata_for(self.submitter)
        self.admin_metadata = self.metadata_for(self.admin)

        job_env = {"HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                   "HFGATE_GOOGLEAPIS_REST": self.rest.url, "STORAGE_EMULATOR_HOST": self.gcs.url}
        self.jobs = vertex.JobStore(self.project_id, self.project_number, self.region, self.grants, self.identities,
                                    self.state_dir, job_env, self._job_metadata, self.gcs)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.grpc.add_generic_rpc_handlers((secretmanager.grpc_handler(self.secrets), vertex.grpc_handler(self.jobs)))
        self.grpc_port = self.grpc.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
        self.grpc.start()
        self.started = True
        self.startup_s = time.time() - t0
        (self.state_dir / "outputs.json").write_text(self.outputs.to_json())
        tokens = self.state_dir / "hub-tokens.json"
        tokens.write_text(json.dumps(self.hub_tokens, indent=2))
        tokens.chmod(0o600)
        (self.state_dir / "gcloud").mkdir(exist_ok=True)
        (self.state_dir / "localcloud.env").write_text(
            "".join(f"export {k}={v}\n" for k, v in self.env().items()))
        return self

    def metadata_for(self, member: str):
        if member not in self._metadata_by_member:
            self._metadata_by_member[member] = start_metadata(self.identities, member, self.project_id,
                                                              self.project_number)
        return self._metadata_by_member[member]

    def _job_metadata(self, member: str):
        return start_metadata(self.identities, member, self.project_id, self.project_number)

    def env(self, as_member: str | None = None) -> dict[str, str]:
        """What a process needs to use the local cloud, calling as `as_member` (the submitter by default)."""
        md = self.metadata_for(as_member) if as_member else self.metadata
        return {
            "HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
            "HFGATE_SECRETMANAGER_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "HFGATE_VERTEX_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "HFGATE_GOOGLEAPIS_REST": self.rest.url,
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            "GCE_METADATA_HOST": md.hostport, "GCE_METADATA_IP": md.hostport,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            # An empty gcloud config: Application Default Credentials fall through to the metadata server.
            "CLOUDSDK_CONFIG": str(self.state_dir / "gcloud"), "GOOGLE_APPLICATION_CREDENTIALS": "",
            "HFGATE_OUTPUTS": str(self.state_dir / "outputs.json"),
        }

    def stop(self) -> None:
        if not self.started:
            return
        self.jobs.stop_all()
        self.grpc.stop(0)
        for server in [self.hub, self.cdn, self.rest, *self._metadata_by_member.values()]:
            server.stop()
        self.gcs.stop()
        self.started = False
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCloud":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Hugging Face Jobs run locally too ---------------------------------------------------------------------------
    def _run_hf_job(self, job: dict) -> None:
        import subprocess

        def run():
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "PYTHONPATH")}
            env.update({"HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"})
            env.update(job["environment"])
            env.update(job["secrets"])
            job["status"] = {"stage": "RUNNING", "message": None}
            try:
                proc = subprocess.Popen(job["command"] + job["arguments"], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
            except OSError as exc:
                job["status"] = {"stage": "ERROR", "message": str(exc)}
                return
            job["cancel"] = proc.kill
            for line in proc.stdout:
                job["logs"].append((time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line.rstrip("\n")))
            code = proc.wait()
            if job["status"]["stage"] != "CANCELED":
                job["status"] = {"stage": "COMPLETED" if code == 0 else "ERROR",
                                 "message": None if code == 0 else f"exit code {code}"}
        threading.Thread(target=run, daemon=True).start()


def _rest_handler(cloud: LocalCloud):
    """googleapis REST: Secret Manager's `v1/{name}:access` and Cloud Logging's `v2/entries:list`."""

    class Rest(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if path.startswith("/v1/projects/") and path.endswith(":access"):
                return self._send(*secretmanager.rest_access(cloud.secrets, path, self.headers.get("authorization")))
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if path == "/v2/entries:list":
                if cloud.identities.member_for(self.headers.get("authorization")) is None:
                    return self._send(401, {"error": {"code": 401, "message": "Request had invalid authentication"
                                                      " credentials.", "status": "UNAUTHENTICATED"}})
                import re
                m = re.search(r'resource\.labels\.job_id\s*=\s*"?(\d+)"?', body.get("filter", ""))
                entries = cloud.jobs.entries(m.group(1)) if m else []
                start = int(body.get("pageToken") or 0)
                size = int(body.get("pageSize") or 1000)
                page = entries[start:start + size]
                resp = {"entries": page}
                if start + size < len(entries):
                    resp["nextPageToken"] = str(start + size)
                return self._send(200, resp)
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

    return Rest

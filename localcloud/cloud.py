"""Start and stop the whole local cloud, seeded from seed.toml and the stacks' own names and grants."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import grpc

from localcloud import asset, secretmanager, tls, vertex
from localcloud.gateway import proxy_env, start_gateway
from localcloud.gcs import GcsEmulator
from localcloud.hub import HubState, start_hub
from localcloud.iam import Iam
from review.roles import GET_ACCESS_TOKEN, LOG_LIST
from localcloud.loopback import serve
from localcloud.metadata import start_metadata
from localcloud.state import Grants, Identities, Seed
from stacks.config import load_settings
from stacks.contract import outputs_from_settings
from stacks.naming import names_for
from review.plan import load as load_plan
from review.plan import synthesized


def _seed_files(kind: str, name: str) -> dict[str, bytes]:
    """A seeded repo's contents: a real tiny Llama that loads and trains (`localcloud.tinymodel.seed_model`) for
    `safetensors`; eight chat rows for `dataset`; for `pickle`, a config and an unloadable `pytorch_model.bin` (that
    repo exists to be warned about and refused, never loaded)."""
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "name": name}).encode()
    if kind == "safetensors":
        try:
            from localcloud.tinymodel import seed_model
            return dict(seed_model())
        except ImportError as exc:     # no `train` extra: nothing trains here anyway; say so in the repo itself
            print(f"localcloud: {name} seeded without weights ({exc.name} missing: install hfgate[train] for a"
                  " tiny model that loads and trains)", file=sys.stderr)
            header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
            return {"config.json": config, "model.safetensors": len(header).to_bytes(8, "little") + header,
                    "README.md": b"---\nlicense: apache-2.0\n---\nNo weights: seeded without the train extra.\n"}
    if kind == "pickle":
        return {"config.json": config, "pytorch_model.bin": os.urandom(4096),
                "README.md": b"---\nlicense: apache-2.0\n---\n"}
    if kind == "dataset":
        rows = "\n".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                  {"role": "assistant", "content": f"a{i}"}]}) for i in range(8))
        return {"train.jsonl": rows.encode(), "README.md": b"---\nlicense: cc-by-4.0\n---\n"}
    raise ValueError(f"seed repo {name}: unknown kind {kind!r} (safetensors, pickle, dataset)")


def env_file(env: dict[str, str], state_dir: Path, who: str) -> str:
    """`env` as a file to `source` in a shell: absolute paths, quoted values, and the proxy scoped to hfgate.

    The local cloud's gateway (localcloud.gateway) refuses every destination but the one Google host it serves, so
    a shell-wide HTTPS_PROXY would break curl, pip and everything else run in that shell. The file sets
    HFGATE_HTTPS_PROXY instead: hfgate's own processes (the CLI, `jobs.api` in your script) use it as their
    HTTPS_PROXY (jobs.endpoints.apply_scoped_proxy), everything else keeps the shell's settings. The trust
    settings name a bundle of the public roots plus the local CA, so real sites still verify."""
    values = {k: v for k, v in env.items() if k.lower() not in ("https_proxy", "no_proxy")}
    values["HFGATE_HTTPS_PROXY"] = env["HTTPS_PROXY"]
    values["HFGATE_LOCALCLOUD_STATE"] = str(state_dir)
    head = (f"# hfgate local cloud, calling as {who}: `source` this file (written by `python -m localcloud up`;"
            " the ports change at each start)\n")
    return head + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def ensure_plan(env: str, outdir: Path | None = None) -> Path:
    """The synthesized plan of `env` (cdktf.out/stacks/hfgate-<env>/cdk.tf.json), synthesized now if missing."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parent.parent
    outdir = Path(outdir or os.environ.get("CDKTF_OUTDIR") or root / "cdktf.out")
    path = synthesized(outdir, env)
    if not path.exists():
        print(f"localcloud: synthesizing the {env} stack into {outdir} (once)", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(root / "main.py")], cwd=root, capture_output=True, text=True,
                              env={**os.environ, "HFGATE_ENVS": env, "CDKTF_OUTDIR": str(outdir)})
        if proc.returncode != 0:
            raise RuntimeError(f"synth of {env} failed: {proc.stderr.strip()[-2000:]}")
    return path


class LocalCloud:
    """Everything on loopback. What the stacks declare (secret, buckets, service accounts, IAM grants) is created
    from the synthesized plan itself (`plan`), so the local cloud cannot drift from the stacks."""

    def __init__(self, seed_path: Path | None = None, state_dir: Path | None = None, plan: Path | None = None,
                 env: str | None = None) -> None:
        self.seed = Seed.load(seed_path)
        env = env or self.seed.raw["project"]["env"]
        self.settings = load_settings(env)
        s = self.settings
        self.project_id, self.region = s.project_id, s.region
        self.project_number = s.project_number or "100000000001"
        # One contract per team in an environment with teams (the first is the default for env() and the
        # trainer/submitter properties); one contract, team "", without.
        self.team_outputs = {t.name: outputs_from_settings(s, self.project_number, t.name) for t in s.teams} or \
            {"": outputs_from_settings(s, self.project_number)}
        first = next(iter(self.team_outputs))
        self.names = names_for(s, first or None)
        self.outputs = self.team_outputs[first]
        plan_path = Path(plan) if plan else ensure_plan(env)
        self.plan = load_plan(plan_path)
        # Every resource of the plan goes through Google's documented constraints (stacks.constraints, the table
        # `make synth` applies), then is recorded: the secret, buckets, accounts and grants are also served; the
        # rest (network, proxy, CA, perimeter) is validated and recorded, not emulated. A plan Google would refuse
        # never starts a local cloud.
        from stacks.constraints import enforce
        enforce({self.plan.stack: json.loads(plan_path.read_text())})
        self.resources = {r.address: self.plan.resolved(r) for r in self.plan.resources}
        self._own_state = state_dir is None
        # Absolute: the env file names paths in it, and is sourced and used from any folder.
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="localcloud-")).resolve()
        self.identities = Identities()
        self.grants = Grants()
        # Who may do what, for every local service: one evaluator over the plan's hierarchy and bindings.
        self.iam = Iam(self.grants, self.project_id, self.project_number)
        for t in s.teams:                 # each team's own project (the plan's resources name it too)
            self.iam.add_project(t.project_id, str(t.project_number or ""))
        self.hub_state = HubState()
        self.hub_tokens: dict[str, str] = {}
        # Cloud Logging's read quota, per project: entries:list calls in any 60 s beyond it answer 429
        # RESOURCE_EXHAUSTED, as the real service does (a knob; 60 per minute by default).
        self.logging_read_quota_per_min = 60
        self.logging_window_s = 60.0      # the quota's window (a knob: tests shorten it)
        self.logging_reads: list[float] = []      # the environment's project's reads
        self.logging_reads_of: dict[str, list[float]] = {}   # every other consumer project's (a team's)
        self.logging_throttled = 0
        self.logging_lock = threading.Lock()
        self._metadata_by_member: dict[str, object] = {}
        self.boundary_lookups: list[str] = []     # allowedLocations calls served (localcloud.gateway)
        self.impersonations: list[tuple[str, str]] = []   # (caller, account) of every access token minted
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
        """The stacks' hierarchy and IAM, read from the plan (localcloud.iam: organization, folder, project, secret,
        service-account and bucket bindings). Then the seed's extra principals (the platform admin, an intruder),
        granted at the top of the hierarchy: the platform admin serves every team's project."""
        self.iam.load_plan(self.plan)
        for p in self.seed.raw.get("principals", []):
            for role in p["roles"]:
                self.grants.add(p["member"], role, "*")

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
            self.hub_state.add_repo(r["id"], _seed_files(r.get("kind", "safetensors"), r["id"]),
                                    type=r.get("type", "model"), private=r.get("private", False),
                                    gated=r.get("gated", False), members=set(r.get("members", [])),
                                    access=dict(r.get("access", {})))

    # lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> "LocalCloud":
        t0 = time.time()
        self._seed_grants()
        self._seed_hub()
        self.gcs = GcsEmulator(self.project_id, self.iam, self.identities)
        self.gcs.start()
        self.buckets = [self.plan.resolved(b)["name"] for b in self.plan.of_type("google_storage_bucket")]
        for bucket in self.buckets:
            self.gcs.create_bucket(bucket, self.region)

        self.secrets = secretmanager.SecretStore(self.project_id, self.project_number, self.iam, self.identities)
        from google.cloud.secretmanager_v1 import types as sm
        for r in self.plan.of_type("google_secret_manager_secret"):
            v = self.plan.resolved(r)
            replicas = [rep["location"] for rep in v.get("replication", {}).get("user_managed", {}).get("replicas", [])]
            self.secrets.create_secret(self.admin, f"projects/{v.get('project') or self.project_id}", v["secret_id"],
                                       sm.Secret(replication=sm.Replication(user_managed=sm.Replication.UserManaged(
                                           replicas=[sm.Replication.UserManaged.Replica(location=loc)
                                                     for loc in replicas])) if replicas else
                                           sm.Replication(automatic=sm.Replication.Automatic()),
                                           labels=v.get("labels") or {},
                                           annotations=v.get("annotations") or {},
                                           rotation=sm.Rotation(rotation_period=v["rotation"]["rotation_period"])
                                           if (v.get("rotation") or {}).get("rotation_period") else None))

        self.tls = tls.make(self.state_dir / "tls")
        self.hub, self.cdn = start_hub(self.hub_state, self.tls.server_context())
        self.hub_state.job_runner = self._run_hf_job
        self.rest = serve(_rest_handler(self), self.tls.server_context())
        self.gateway = start_gateway(self.rest.port)
        self.metadata = self.metadata_for(self.submitter)
        self.admin_metadata = self.metadata_for(self.admin)

        job_env = {"HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HFGATE_GOOGLEAPIS_REST": self.rest.url, "STORAGE_EMULATOR_HOST": self.gcs.url,
                   **self.tls.trust_env(), **proxy_env(self.gateway)}
        self.jobs = vertex.JobStore(self.project_id, self.project_number, self.region, self.iam, self.identities,
                                    self.state_dir, job_env, self._job_metadata, self.gcs)
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        # Cloud Asset Inventory (review --live): the deployed state, from this cloud's own IAM and resources.
        asset.place_hierarchy(self.iam)
        self.assets = asset.Inventory(self.iam, self.identities, self.secrets)
        self.assets.load_plan(self.plan, self.region)
        self.grpc.add_generic_rpc_handlers((secretmanager.grpc_handler(self.secrets), vertex.grpc_handler(self.jobs),
                                            asset.grpc_handler(self.assets)))
        self.grpc_port = self.grpc.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [(self.tls.key_pem, self.tls.cert_pem)]))
        self.grpc.start()
        self.started = True
        self.startup_s = time.time() - t0
        if self.settings.teams:
            # As `cdktn output --outputs-file` writes a stack with teams: `--team NAME` picks one; and one file per
            # team for HFGATE_OUTPUTS.
            stack = {f"team_{team}": json.loads(o.to_json()) for team, o in self.team_outputs.items()}
            (self.state_dir / "outputs.json").write_text(json.dumps({f"hfgate-{self.settings.env}": stack}, indent=2))
            for team, outputs in self.team_outputs.items():
                (self.state_dir / f"outputs-{team}.json").write_text(outputs.to_json())
        else:
            (self.state_dir / "outputs.json").write_text(self.outputs.to_json())
        tokens = self.state_dir / "hub-tokens.json"
        tokens.write_text(json.dumps(self.hub_tokens, indent=2))
        tokens.chmod(0o600)
        (self.state_dir / "gcloud").mkdir(exist_ok=True)
        (self.state_dir / "localcloud.env").write_text(env_file(self.env(), self.state_dir, "the submitter"))
        (self.state_dir / "localcloud-admin.env").write_text(
            env_file(self.env(as_member=self.admin), self.state_dir, f"the platform admin ({self.admin})"))
        return self

    def metadata_for(self, member: str):
        if member not in self._metadata_by_member:
            project = self.iam.project_of(member)       # a service account's own project (or the environment's)
            self._metadata_by_member[member] = start_metadata(self.identities, member, project,
                                                              self.iam.number(project), self._job_account)
        return self._metadata_by_member[member]

    def _job_metadata(self, member: str):
        project = self.iam.project_of(member)
        return start_metadata(self.identities, member, project, self.iam.number(project), self._job_account)

    def _job_account(self, job_id: str) -> str | None:
        """The service account local job `job_id` runs as (None: no such job)."""
        jobs = getattr(self, "jobs", None)
        job = jobs.jobs.get(job_id) if jobs is not None else None
        return job.job_spec.service_account if job is not None else None

    def env(self, as_member: str | None = None, team: str | None = None) -> dict[str, str]:
        """What a process needs to use the local cloud, calling as `as_member` (the submitter by default), with
        `team`'s outputs contract in an environment with teams."""
        md = self.metadata_for(as_member) if as_member else self.metadata
        outputs_file = self.state_dir / (f"outputs-{team}.json" if team else "outputs.json")
        return {
            # Downloads speak Xet (the jobs do), but the local Hub has no Xet upload side (localcloud/xet.py), and
            # huggingface_hub uploads through Xet whenever hf-xet is installed: the user's shell (publish) keeps LFS.
            "HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
            "HFGATE_SECRETMANAGER_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "HFGATE_VERTEX_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "HFGATE_ASSET_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "HFGATE_GOOGLEAPIS_REST": self.rest.url,
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            "GCE_METADATA_HOST": md.hostport, "GCE_METADATA_IP": md.hostport,
            "GOOGLE_CLOUD_PROJECT": self.project_id,
            # An empty gcloud config: Application Default Credentials fall through to the metadata server.
            "CLOUDSDK_CONFIG": str(self.state_dir / "gcloud"), "GOOGLE_APPLICATION_CREDENTIALS": "",
            "HFGATE_OUTPUTS": str(outputs_file),
            **self.tls.trust_env(), **proxy_env(self.gateway),
        }

    @contextlib.contextmanager
    def environ(self, as_member: str | None = None, team: str | None = None):
        """This process's environment set to `env(...)` for the block (for code that calls the local cloud in-process),
        then put back. Before putting it back, waits for google-auth's background Regional Access Boundary lookups
        started in the block: such a thread reads the proxy settings when it sends, and one that sent after they were
        gone would go to the real iamcredentials.googleapis.com (see localcloud.gateway).

        google-auth reads GCE_METADATA_HOST once, when `google.auth.compute_engine._metadata` is first imported, so
        setting the variable alone would leave every later in-process call with the identity of whichever member was
        current at that import. The block also points that module's copy at `as_member`'s metadata server, and
        puts back what the outer environment says afterwards; if google-auth no longer keeps the copy where this
        expects it, the block refuses rather than call as someone else."""
        env = self.env(as_member=as_member, team=team)
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            with _metadata_host(env["GCE_METADATA_HOST"], outer=saved):
                yield self
        finally:
            for thread in threading.enumerate():
                if type(thread).__name__ == "_RegionalAccessBoundaryRefreshThread":
                    thread.join(timeout=60)
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        if not self.started:
            return
        self.jobs.stop_all()
        self.grpc.stop(0)
        for server in [self.hub, self.cdn, self.rest, self.gateway, *self._metadata_by_member.values()]:
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
            env.update({"HF_ENDPOINT": self.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1",
                        **self.tls.trust_env()})
            env["PATH"] = os.pathsep.join([*self.jobs.path_prefix, os.path.dirname(sys.executable), env["PATH"]])
            workdir = Path(tempfile.mkdtemp(prefix="hfjob-", dir=self.state_dir))
            env.update({"HOME": str(workdir), "TMPDIR": str(workdir)})
            env.update(job["environment"])
            env.update(job["secrets"])
            job["status"] = {"stage": "RUNNING", "message": None}
            try:
                argv = [a.replace("/tmp/", f"{workdir}/") for a in job["command"] + job["arguments"]]
                # stdout and stderr: two pipes (localcloud.vertex.read_lines)
                proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, cwd=workdir,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
            except OSError as exc:
                job["status"] = {"stage": "ERROR", "message": str(exc)}
                return
            job["cancel"] = proc.kill
            vertex.read_lines(proc, lambda line: job["logs"].append(
                (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), line)))
            code = proc.wait()
            if job["status"]["stage"] != "CANCELED":
                job["status"] = {"stage": "COMPLETED" if code == 0 else "ERROR",
                                 "message": None if code == 0 else f"exit code {code}"}
        threading.Thread(target=run, daemon=True).start()


def _ts_key(ts: str) -> tuple[str, str]:
    head, _, frac = ts.rstrip("Z").partition(".")
    return head, (frac + "000000000")[:9]


def _allowed_locations(cloud: LocalCloud, path: str, authorization: str | None) -> tuple[int, dict]:
    """IAM Credentials `serviceAccounts.allowedLocations` (what google-auth's Regional Access Boundary lookup
    reads): the caller must hold a token of that account; the answer has no boundary (an empty encoding)."""
    email = path.removeprefix("/v1/projects/-/serviceAccounts/").removesuffix("/allowedLocations")
    member = cloud.identities.member_for(authorization)
    cloud.boundary_lookups.append(email)
    if member is None:
        return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                               "status": "UNAUTHENTICATED"}}
    if member != f"serviceAccount:{email}":
        return 403, {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on"
                               " resource (or it may not exist).", "status": "PERMISSION_DENIED"}}
    return 200, {"locations": [cloud.region], "encodedLocations": "0x0"}


def _generate_access_token(cloud: LocalCloud, path: str, authorization: str | None,
                           body: dict | None = None) -> tuple[int, dict]:
    """IAM Credentials `serviceAccounts.generateAccessToken` (impersonation): the caller needs
    iam.serviceAccounts.getAccessToken on that account (Service Account Token Creator), as in the "Create short-lived
    credentials for a service account" page; the token then speaks for the account, for an hour at most."""
    email = path.removeprefix("/v1/projects/-/serviceAccounts/").removesuffix(":generateAccessToken")
    member = cloud.identities.member_for(authorization)
    if member is None:
        return 401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                               "status": "UNAUTHENTICATED"}}
    if not cloud.iam.allows(member, GET_ACCESS_TOKEN, f"serviceAccount:{email}"):
        return 403, {"error": {"code": 403, "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on"
                               " resource (or it may not exist).", "status": "PERMISSION_DENIED"}}
    # `lifetime` ("Ns"): at most an hour, one hour when absent (REST reference, generateAccessToken); the token
    # stops working when it expires.
    lifetime = str((body or {}).get("lifetime") or "3600s")
    try:
        seconds = float(lifetime.removesuffix("s"))
    except ValueError:
        seconds = -1.0
    if not lifetime.endswith("s") or not 0 < seconds <= 3600:
        return 400, {"error": {"code": 400, "message": f"Invalid value for lifetime: {lifetime!r} (a duration in"
                               " seconds such as \"3600s\", at most 3600s).", "status": "INVALID_ARGUMENT"}}
    cloud.impersonations.append((member, email))
    expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
    return 200, {"accessToken": cloud.identities.issue(f"serviceAccount:{email}", lifetime_s=seconds),
                 "expireTime": expire}


def _logging_projects(cloud: LocalCloud, member: str, names: list) -> tuple[tuple[int, dict] | None, set[str]]:
    """Cloud Logging `entries:list`'s resourceNames: each project read needs logging.logEntries.list on it
    (localcloud.iam). (a refusal to send, or None) and the projects (ids) whose logs may be returned."""
    if not names:
        return (400, {"error": {"code": 400, "message": "resourceNames: at least one resource name is required.",
                                "status": "INVALID_ARGUMENT"}}), set()
    projects = set()
    for name in names:
        project = str(name).removeprefix("projects/")
        if not str(name).startswith("projects/") or "/" in project:
            return (400, {"error": {"code": 400, "message": f"Invalid resource name: {name!r} (the local cloud"
                                    " reads projects/PROJECT_ID only).", "status": "INVALID_ARGUMENT"}}), set()
        project = cloud.iam.project_id(project)
        if not cloud.iam.allows(member, LOG_LIST, f"project:{project}"):
            return (403, {"error": {"code": 403, "message": f"Permission '{LOG_LIST}' denied on resource (or it may"
                                    " not exist).", "status": "PERMISSION_DENIED"}}), set()
        projects.add(project)
    return None, projects


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

        def _drain(self) -> bytes:
            """Read the request body whatever the route: the keep-alive connection stays in step."""
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _not_found(self):
            self._drain()
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

        do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_found

        def do_GET(self):
            self._drain()
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            if path.startswith("/v1/projects/") and path.endswith(":access"):
                return self._send(*secretmanager.rest_access(cloud.secrets, path, self.headers.get("authorization")))
            if path.startswith("/v1/projects/-/serviceAccounts/") and path.endswith("/allowedLocations"):
                return self._send(*_allowed_locations(cloud, path, self.headers.get("authorization")))
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

        def do_POST(self):
            path = urllib.parse.urlsplit(self.path).path
            try:
                body = json.loads(self._drain() or b"{}")
            except ValueError:
                return self._send(400, {"error": {"code": 400, "message": "Invalid JSON payload received.",
                                                  "status": "INVALID_ARGUMENT"}})
            if path.startswith("/v1/projects/-/serviceAccounts/") and path.endswith(":generateAccessToken"):
                return self._send(*_generate_access_token(cloud, urllib.parse.unquote(path),
                                                          self.headers.get("authorization"), body))
            if path == "/v2/entries:list":
                member = cloud.identities.member_for(self.headers.get("authorization"))
                if member is None:
                    return self._send(401, {"error": {"code": 401, "message": "Request had invalid authentication"
                                                      " credentials.", "status": "UNAUTHENTICATED"}})
                refused, projects = _logging_projects(cloud, member, body.get("resourceNames") or [])
                if refused:
                    return self._send(*refused)
                import re
                now = time.time()
                # The quota is the consumer's: the caller's own project (a team's reads never use up another's).
                consumer = cloud.iam.project_of(member)
                with cloud.logging_lock:       # a refused read does not count against the quota
                    reads = cloud.logging_reads if consumer == cloud.project_id else \
                        cloud.logging_reads_of.setdefault(consumer, [])
                    recent = [t for t in reads if now - t < cloud.logging_window_s]
                    if len(recent) >= cloud.logging_read_quota_per_min:
                        cloud.logging_throttled += 1
                        return self._send(429, {"error": {
                            "code": 429, "status": "RESOURCE_EXHAUSTED",
                            "message": "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per"
                                       " minute' of service 'logging.googleapis.com' for consumer"
                                       f" 'project_number:{cloud.iam.number(consumer)}'."}})
                    reads.append(now)
                flt = body.get("filter", "")
                m = re.search(r'resource\.labels\.job_id\s*=\s*"?(\d+)"?', flt)
                entries = cloud.jobs.entries(m.group(1)) if m else []
                if m and cloud.jobs.project_of.get(m.group(1), cloud.project_id) not in projects:
                    entries = []            # a job of another project logs there, not in the projects read
                audit = re.search(r'logName\s*=\s*"projects/([^/"]+)/logs/cloudaudit\.googleapis\.com%2Factivity"',
                                  flt)
                if audit and not m:         # Admin Activity audit log (Secret Manager's version writes)
                    wanted = cloud.iam.project_id(audit.group(1))
                    entries = [e for e in list(cloud.secrets.audit) if wanted in projects
                               and e["logName"] == f"projects/{wanted}/logs/cloudaudit.googleapis.com%2Factivity"]
                    for key, value in re.findall(r'protoPayload\.(methodName|serviceName)\s*=\s*"([^"]+)"', flt):
                        entries = [e for e in entries if e["protoPayload"][key] == value]
                    prefix = re.search(r'protoPayload\.resourceName\s*:\s*"([^"]+)"', flt)
                    if prefix:              # `:` (has): a substring match
                        entries = [e for e in entries if prefix.group(1) in e["protoPayload"]["resourceName"]]
                has = re.search(r'textPayload\s*:\s*"((?:[^"\\]|\\.)*)"', flt)
                if has:            # Cloud Logging's `:` (has): a substring match
                    needle = re.sub(r'\\(.)', r'\1', has.group(1)).lower()
                    entries = [e for e in entries if needle in e.get("textPayload", "").lower()]
                task = re.search(r'resource\.labels\.task_name\s*=\s*"([^"]+)"', flt)
                if task:
                    entries = [e for e in entries if e["resource"]["labels"].get("task_name") == task.group(1)]
                since = re.search(r'timestamp\s*>=\s*"([^"]+)"', flt)
                if since:
                    entries = [e for e in entries if _ts_key(e["timestamp"]) >= _ts_key(since.group(1))]
                start = int(body.get("pageToken") or 0)
                size = int(body.get("pageSize") or 1000)
                page = entries[start:start + size]
                resp = {"entries": page}
                if start + size < len(entries):
                    resp["nextPageToken"] = str(start + size)
                return self._send(200, resp)
            self._send(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}})

    return Rest


_GOOGLE_AUTH_METADATA = "google.auth.compute_engine._metadata"


@contextlib.contextmanager
def _metadata_host(hostport: str, outer: dict[str, str]):
    """google-auth's import-time copy of GCE_METADATA_HOST set to `hostport` for the block (importing the module
    first, so an import inside the block cannot capture it for good), then to what `outer` (the environment outside
    the block) says, as if the module had been imported there."""
    import importlib
    module = importlib.import_module(_GOOGLE_AUTH_METADATA)
    if not isinstance(getattr(module, "_GCE_METADATA_HOST", None), str):
        raise RuntimeError(f"{_GOOGLE_AUTH_METADATA} no longer keeps _GCE_METADATA_HOST: in-process calls cannot be"
                           " made as a chosen member in this google-auth version; run the call in a subprocess"
                           " with env=cloud.env(as_member=...)")
    module._GCE_METADATA_HOST = hostport
    try:
        yield
    finally:
        module._GCE_METADATA_HOST = (outer.get("GCE_METADATA_HOST") or outer.get("GCE_METADATA_ROOT")
                                     or getattr(module, "_GCE_DEFAULT_HOST", "metadata.google.internal"))

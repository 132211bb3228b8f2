#!/usr/bin/env python3
"""Runs first inside the training container (standard library only, so any Python image can run it).

It travels inside the job spec itself (`python3 -c <this file> -- trl sft ...`), never through a bucket: nothing
anyone else can write decides what the job runs first.

- HFGATE_TOKEN_SECRET_VERSION=projects/N/secrets/S/versions/V: get an access token for the job's service account from
  the metadata server, read that pinned version through Secret Manager's REST API, check its CRC32C, and pass it to
  the trainer as HF_TOKEN in its environment only: never in argv, never printed.
- HFGATE_VERIFY=[{"dir": ..., "manifest_sha256": ...}]: before the trainer starts, check that each mirror folder's
  manifest has the SHA-256 pinned at submit time, that every file has the SHA-256 the manifest records, and that the
  folder holds nothing else.

- HFGATE_PROXY_CA=<PEM>: the egress proxy's TLS inspection CA (outputs contract `proxy_ca_certificate`). Written
  after the roots the container already trusts (SSL_CERT_FILE or REQUESTS_CA_BUNDLE if set, else the system
  bundle) into one file that SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE then name (httpx, requests,
  urllib, curl and OpenSSL read these), so the Hub clients accept the proxy's certificates for the Hugging Face hosts.
- HFGATE_RESUME=1: if the trainer's --output_dir holds checkpoints (a restarted or resubmitted job), resume from the
  newest complete one that this request's own jobs wrote (--resume_from_checkpoint). With HFGATE_REQUEST_ID, a
  watcher (the chief's) records each checkpoint the job writes (`hfgate-origin.json`: the request id, the job, the
  SHA-256 of every file); on resume, a checkpoint without that record, with another request's, or changed since, is
  skipped with a line saying why (a checkpoint planted by another run's job is never resumed from).
- HFGATE_LAUNCH=torchrun: one distributed run across every replica of the job: node count and this node's rank from
  Vertex AI's CLUSTER_SPEC (workerpool0 is rank 0, then workerpool1's replicas), the master from MASTER_ADDR and
  MASTER_PORT when Vertex sets them (else workerpool0's address), HFGATE_PROCS_PER_NODE processes per node, and
  `trl sft` run under torchrun through a small rank wrapper (the same script and arguments). A distributed run
  ends when training ends: each rank, once `trl sft` returns, tears its process group down within a bounded time
  (a barrier, then destroy_process_group, abandoned after HFGATE_RANK_TEARDOWN_S) and leaves with os._exit (the
  interpreter's own teardown can hang in the process group's destructor); the bootstrap supervises torchrun
  instead of exec-ing it: once every local rank has finished, torchrun must exit within HFGATE_TEARDOWN_GRACE_S,
  or it and every process it started (its workers run in sessions of their own) are stopped and the replica fails
  with EXIT_TEARDOWN and a line saying which node and why.

- Always: library warnings a job's user cannot act on are silenced narrowly (by category and module, see
  QUIET_WARNINGS), and a single-device `trl sft` is given accelerate's defaults explicitly (ACCELERATE_DEFAULTS).

Each failure is one line on stderr and a non-zero exit; the trainer never starts.
usage: python3 bootstrap.py -- trl sft ...
"""
import base64
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.request

EXIT_CONFIG, EXIT_METADATA, EXIT_ACCESS, EXIT_CORRUPT, EXIT_TAMPERED, EXIT_TEARDOWN = 64, 65, 66, 67, 68, 69
# torchrun's agents wait for each other at an exit barrier (300 s by default) after their workers end: the grace
# must outlast it, or a node that finished early would be stopped while waiting for a slower one.
DEFAULT_TEARDOWN_GRACE_S = 360
RANK_TEARDOWN_S = 30

# What each rank runs under torchrun (written next to the job's temporary files): `trl sft`'s own module, then a
# bounded teardown, then os._exit so no destructor can keep a finished rank alive.
RANK_WRAPPER = r"""
import os, runpy, sys, threading, traceback
code = 0
sys.argv = ["trl sft", *sys.argv[1:]]
# Keep every Trainer alive until the process leaves: when `trl sft`'s main returns, its trainer (and the DDP
# reducer holding the gloo process group) would be freed right there, and that destructor is what hung a finished
# rank (it joins a gloo worker thread). Alive, nothing is destroyed implicitly; the teardown below is explicit.
_kept = []
try:
    import transformers
    _init = transformers.Trainer.__init__
    def _keep(self, *args, **kwargs):
        _kept.append(self)
        _init(self, *args, **kwargs)
    transformers.Trainer.__init__ = _keep
except Exception as exc:
    sys.stderr.write(f"hfgate-rank: cannot keep the trainer alive ({exc}); teardown is left to the interpreter\\n")
try:
    runpy.run_module("trl.scripts.sft", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
except BaseException:
    traceback.print_exc()
    code = 1
def teardown():
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            if code == 0:
                dist.barrier()
            dist.destroy_process_group()
    except Exception as exc:
        sys.stderr.write(f"hfgate-rank: process group teardown: {exc}\n")
worker = threading.Thread(target=teardown, daemon=True)
worker.start()
worker.join(float(os.environ.get("HFGATE_RANK_TEARDOWN_S", "30")))
if worker.is_alive():
    sys.stderr.write("hfgate-rank: rank %s: the process group did not tear down in time; leaving anyway\n"
                     % os.environ.get("RANK", "?"))
sys.stdout.flush()
sys.stderr.flush()
done = os.environ.get("HFGATE_DONE_DIR")
if done:
    with open(os.path.join(done, "rank-%s" % os.environ.get("LOCAL_RANK", "0")), "w") as f:
        f.write(str(code))
os._exit(code)
"""
MANIFEST = "hfgate-manifest.json"
# Library warnings in every job's log that its user cannot act on (the libraries' own calls raise them), silenced by
# category and module only, through PYTHONWARNINGS (exact module names; the trainer's processes inherit it): the
# FutureWarnings transformers 5.x gives for its renamed gradient-checkpointing names, which trl itself still uses.
# Any other warning, and a user's own PYTHONWARNINGS (which comes after, so it wins), is untouched.
QUIET_WARNINGS = ("ignore::FutureWarning:transformers.training_args",
                  "ignore::FutureWarning:transformers.modeling_utils")
# `trl sft` runs `accelerate launch`, which lists the defaults it picked for what it was not told ("To avoid this
# warning pass in values"). A single-device run (multi-device runs go through torchrun) is told the same values.
ACCELERATE_DEFAULTS = (("--num_processes", "1"), ("--num_machines", "1"), ("--mixed_precision", "no"),
                       ("--dynamo_backend", "no"))


def quiet_library_noise(argv, env, distributed):
    """The trainer's command and environment without the library noise above (its arguments: a user's own
    launch values kept)."""
    own = env.get("PYTHONWARNINGS")
    env["PYTHONWARNINGS"] = ",".join([*QUIET_WARNINGS, own] if own else QUIET_WARNINGS)
    if distributed or argv[:2] != ["trl", "sft"]:
        return argv
    given = {a.split("=", 1)[0] for a in argv}
    return argv + [x for flag, value in ACCELERATE_DEFAULTS if flag not in given for x in (flag, value)]


def fail(code, message):
    sys.stderr.write(f"hfgate-bootstrap: {message}\n")
    sys.exit(code)


def crc32c(data):
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _no_proxy_opener():
    # Metadata and Google APIs are reached directly, never through the Hugging Face egress proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def access_token():
    host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    req = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"})
    try:
        with _no_proxy_opener().open(req, timeout=10) as resp:
            return json.load(resp)["access_token"]
    except (OSError, ValueError, KeyError) as exc:
        fail(EXIT_METADATA, f"cannot get an access token from the metadata server at {host} ({exc}); "
                            "is the job running with a service account?")


def read_secret(version_name, token):
    base = os.environ.get("HFGATE_GOOGLEAPIS_REST", "https://secretmanager.googleapis.com")
    req = urllib.request.Request(f"{base}/v1/{version_name}:access", headers={"Authorization": f"Bearer {token}"})
    try:
        with _no_proxy_opener().open(req, timeout=20) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError):
            message = exc.reason
        if exc.code == 403:
            fail(EXIT_ACCESS, f"the job's service account may not read {version_name}: {message} "
                              "(grant it roles/secretmanager.secretAccessor on the secret)")
        if exc.code in (400, 404):
            fail(EXIT_ACCESS, f"cannot read {version_name}: {message} (add a version with `hfgate token set`)")
        fail(EXIT_ACCESS, f"Secret Manager answered {exc.code}: {message}")
    except OSError as exc:
        fail(EXIT_ACCESS, f"cannot reach Secret Manager at {base} ({exc})")
    data = base64.b64decode(body["payload"]["data"])
    expected = body["payload"].get("dataCrc32c")
    if expected is not None and crc32c(data) != int(expected):
        fail(EXIT_CORRUPT, f"{version_name} arrived corrupted (CRC32C mismatch)")
    return data.decode().rstrip("\r\n")


def verify_mirror(folder, manifest_sha256):
    """The folder is exactly what the manifest pinned at submit time lists, byte for byte."""
    path = os.path.join(folder, MANIFEST)
    try:
        raw = open(path, "rb").read()
    except OSError as exc:
        fail(EXIT_TAMPERED, f"mirror manifest {path} cannot be read ({exc.strerror})")
    if hashlib.sha256(raw).hexdigest() != manifest_sha256:
        fail(EXIT_TAMPERED, f"mirror manifest {path} is not the one checked at submit (SHA-256 differs)")
    listed = {}
    for entry in json.loads(raw)["files"]:
        rel = entry["path"]
        if rel.startswith("/") or ".." in rel.split("/"):
            fail(EXIT_TAMPERED, f"mirror manifest {path} lists a path outside its folder: {rel!r}")
        listed[rel] = entry["sha256"]
    for root, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel != MANIFEST and rel not in listed:
                fail(EXIT_TAMPERED, f"mirror {folder} holds {rel}, which its manifest does not list")
    for rel, digest in sorted(listed.items()):
        file_path = os.path.join(folder, rel)
        if not os.path.isfile(file_path):
            fail(EXIT_TAMPERED, f"mirror {folder} is missing {rel}")
        if sha256_file(file_path) != digest:
            fail(EXIT_TAMPERED, f"mirror file {rel} in {folder} does not match its SHA-256")
    sys.stderr.write(f"hfgate-bootstrap: verified {len(listed)} files in {folder}\n")


ORIGIN = "hfgate-origin.json"


def _checkpoints(out):
    names = [d for d in (os.listdir(out) if os.path.isdir(out) else []) if re.fullmatch(r"checkpoint-\d+", d)]
    return sorted(names, key=lambda d: int(d.split("-")[1]))


def _digest_tree(folder):
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            rel = os.path.relpath(path, folder)
            if rel != ORIGIN and not n.startswith(".hfgate-"):
                files[rel] = sha256_file(path)
    return files


def origin_problem(folder, request_id):
    """Why a checkpoint may not be resumed from by this request (None: it may)."""
    path = os.path.join(folder, ORIGIN)
    if not os.path.isfile(path):
        return "no origin record: not written by one of this request's jobs"
    try:
        with open(path) as f:
            origin = json.load(f)
    except (OSError, ValueError):
        return "its origin record is unreadable"
    if origin.get("request_id") != request_id:
        return f"written for another request ({str(origin.get('request_id'))[:20]})"
    if origin.get("files") != _digest_tree(folder):
        return "its files changed after its job wrote them"
    return None


def resume_args(argv, env):
    if env.pop("HFGATE_RESUME", "") != "1" or "--output_dir" not in argv:
        return argv
    out = argv[argv.index("--output_dir") + 1]
    request_id = env.get("HFGATE_REQUEST_ID", "")
    done = [d for d in _checkpoints(out) if os.path.isfile(os.path.join(out, d, "trainer_state.json"))]
    for name in reversed(done):
        why = origin_problem(os.path.join(out, name), request_id) if request_id else None
        if why:
            sys.stderr.write(f"hfgate-bootstrap: not resuming from {name}: {why}\n")
            continue
        newest = os.path.join(out, name)
        sys.stderr.write(f"hfgate-bootstrap: resuming from {newest}\n")
        return argv + ["--resume_from_checkpoint", newest]
    return argv


def _is_chief(env):
    try:
        task = (json.loads(env.get("CLUSTER_SPEC") or "{}").get("task") or {})
    except ValueError:
        return True
    return task.get("type", "workerpool0") == "workerpool0" and int(task.get("index", 0)) == 0


def record_checkpoints(argv, env):
    """Fork the watcher that records each checkpoint this job writes (see HFGATE_RESUME above): only checkpoints
    that appear after the job started, once complete (transformers' Trainer writes trainer_state.json last: once it
    parses, the checkpoint is whole); a last pass when the job's main process is gone. Written next to the
    checkpoint, atomically, and the folder keeps its modification time (the Trainer rotates checkpoints by it)."""
    request_id = env.get("HFGATE_REQUEST_ID", "")
    if not request_id or "--output_dir" not in argv or env.get("HFGATE_RESUME") != "1" or not _is_chief(env):
        return
    import time
    out = argv[argv.index("--output_dir") + 1]
    seen = set(_checkpoints(out))          # present before this job: never ours to record
    parent = os.getpid()
    if os.fork() != 0:
        return
    try:
        while True:
            alive = os.getppid() == parent
            for name in _checkpoints(out):
                folder = os.path.join(out, name)
                if name in seen:
                    continue
                try:
                    with open(os.path.join(folder, "trainer_state.json")) as f:
                        json.load(f)
                    stat = os.stat(folder)
                    record = {"request_id": request_id, "job": env.get("CLOUD_ML_JOB_ID", ""),
                              "files": _digest_tree(folder)}
                    tmp = os.path.join(folder, f".hfgate-origin.{os.getpid()}")
                    with open(tmp, "w") as f:
                        json.dump(record, f, sort_keys=True)
                    os.replace(tmp, os.path.join(folder, ORIGIN))
                    os.utime(folder, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                except (OSError, ValueError):      # not complete yet, or rotated away meanwhile
                    continue
                seen.add(name)
                sys.stderr.write(f"hfgate-bootstrap: recorded {name} ({len(record['files'])} files) for this"
                                 " request\n")
                sys.stderr.flush()
            if not alive:
                break
            time.sleep(0.5)
    except BaseException as exc:   # a watcher that fails records nothing: resuming then starts from an older one
        sys.stderr.write(f"hfgate-bootstrap: checkpoint recorder stopped: {exc}\n")
    finally:
        os._exit(0)


def launch_command(argv, env):
    if env.pop("HFGATE_LAUNCH", "") != "torchrun":
        return argv
    procs = env.pop("HFGATE_PROCS_PER_NODE", "1")
    try:
        spec = json.loads(env.get("CLUSTER_SPEC") or "{}")
    except ValueError:
        fail(EXIT_CONFIG, "CLUSTER_SPEC is not JSON")
    cluster, task = spec.get("cluster") or {}, spec.get("task") or {}
    chief, workers = cluster.get("workerpool0") or [], cluster.get("workerpool1") or []
    kind, index = task.get("type", "workerpool0"), int(task.get("index", 0))
    if kind not in ("workerpool0", "workerpool1"):
        fail(EXIT_CONFIG, f"this replica is {kind}: hfgate runs training in workerpool0 and workerpool1 only")
    rank = index if kind == "workerpool0" else len(chief) + index
    nodes = max(len(chief) + len(workers), 1)
    first = (chief or ["localhost:29500"])[0]
    addr = env.get("MASTER_ADDR") or first.rsplit(":", 1)[0]
    port = env.get("MASTER_PORT") or first.rsplit(":", 1)[1]
    if argv[:2] != ["trl", "sft"]:
        fail(EXIT_CONFIG, f"distributed launch runs `trl sft`, not {argv[:2]}")
    sys.stderr.write(f"hfgate-bootstrap: node {rank} of {nodes}, {procs} process(es) per node, master {addr}:{port}\n")
    folder = env.get("TMPDIR") or "/tmp"
    wrapper = os.path.join(folder, "hfgate-rank.py")
    with open(wrapper, "w") as f:
        f.write(RANK_WRAPPER)
    env["HFGATE_DONE_DIR"] = os.path.join(folder, "hfgate-done")
    os.makedirs(env["HFGATE_DONE_DIR"], exist_ok=True)
    for stale in os.listdir(env["HFGATE_DONE_DIR"]):      # a restarted replica starts a new run
        os.remove(os.path.join(env["HFGATE_DONE_DIR"], stale))
    env["HFGATE_NODE"] = str(rank)
    env["HFGATE_PROCS_PER_NODE"] = procs
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--node_rank={rank}",
            f"--master_addr={addr}", f"--master_port={port}", f"--nproc_per_node={procs}", wrapper, *argv[2:]]


def _descendants(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return []
    return kids + [d for k in kids for d in _descendants(k)]


def _tagged(tag):
    """Every process carrying this node's run tag in its environment (torchrun's workers, even once reparented)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if tag in f.read().split(b"\0"):
                    out.append(int(name))
        except OSError:
            continue
    return out


def _stop(pids):
    import signal
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def supervise(argv, env, grace_s=None, poll_s=1.0):
    """Run the distributed launcher as a child; return its exit code once it and everything it started are gone.
    When every local rank has written its done marker, the launcher must exit within the grace period; otherwise
    it is stopped with all its processes and the replica fails, saying which node and why."""
    import signal
    import subprocess
    import time
    grace = float(grace_s if grace_s is not None else env.pop("HFGATE_TEARDOWN_GRACE_S", DEFAULT_TEARDOWN_GRACE_S))
    tag = f"HFGATE_NODE_RUN={os.getpid()}-{time.time_ns()}"
    env = {**env, tag.split("=", 1)[0]: tag.split("=", 1)[1]}
    done_dir, expected = env.get("HFGATE_DONE_DIR", ""), int(env.get("HFGATE_PROCS_PER_NODE", "1"))
    node = env.get("HFGATE_NODE", "0")
    child = subprocess.Popen(argv, env=env)

    def forward(signum, _frame):      # the platform stops the replica (cancel, timeout): stop the whole run
        _stop([*_descendants(child.pid), child.pid, *_tagged(tag.encode())])
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, forward)
    finished_at = None
    while True:
        code = child.poll()
        if code is not None:
            _stop(_tagged(tag.encode()))         # nothing the run started outlives it
            return code
        markers = [n for n in (os.listdir(done_dir) if done_dir and os.path.isdir(done_dir) else [])
                   if n.startswith("rank-")]
        if finished_at is None and len(markers) >= expected:
            finished_at = time.monotonic()
            codes = []
            for n in markers:
                with open(os.path.join(done_dir, n)) as f:
                    codes.append(f.read().strip())
            sys.stderr.write(f"hfgate-bootstrap: node {node}: every local rank finished (exit {', '.join(codes)});"
                             f" waiting up to {grace:.0f} s for torchrun to exit\n")
        if finished_at is not None and time.monotonic() - finished_at > grace:
            _stop([*_descendants(child.pid), child.pid, *_tagged(tag.encode())])
            child.wait()
            fail(EXIT_TEARDOWN, f"node {node}: training finished on every local rank, but torchrun and its processes"
                                f" were still running {grace:.0f} s later (a hang at teardown: its exit barrier or a"
                                " worker's process-group destructor); stopped them")
        time.sleep(poll_s)


SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


def trust_proxy_ca(env):
    pem = env.pop("HFGATE_PROXY_CA", "")
    if not pem:
        return False
    if not re.fullmatch(r"\s*(-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----\s*)+", pem):
        fail(EXIT_CONFIG, "HFGATE_PROXY_CA is not a PEM certificate")
    import ssl
    candidates = [env.get("SSL_CERT_FILE"), env.get("REQUESTS_CA_BUNDLE"), ssl.get_default_verify_paths().cafile,
                  *SYSTEM_BUNDLES]
    base = next((p for p in candidates if p and os.path.isfile(p)), None)
    roots = ""
    try:
        import certifi   # the bundle requests and older httpx use when no variable is set
        extra = [certifi.where()]
    except ImportError:
        extra = []
    for bundle in ([base] if base else []) + extra:
        with open(bundle) as f:
            roots += f.read().rstrip("\n") + "\n"
    folder = env.get("TMPDIR") or "/tmp"
    path = os.path.join(folder, "hfgate-trust.pem")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(roots + pem.strip() + "\n")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env[name] = path
    sys.stderr.write(f"hfgate-bootstrap: trusting the egress proxy's TLS inspection CA ({path})\n")
    return True


def main(argv):
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        fail(EXIT_CONFIG, "no trainer command after --")
    env = dict(os.environ)
    try:
        checks = json.loads(env.pop("HFGATE_VERIFY", "") or "[]")
    except ValueError:
        fail(EXIT_CONFIG, "HFGATE_VERIFY is not JSON")
    for check in checks:
        verify_mirror(check["dir"], check["manifest_sha256"])
    trusted = trust_proxy_ca(env)
    version = env.pop("HFGATE_TOKEN_SECRET_VERSION", None)
    if version is not None:
        if "/versions/" not in version or version.endswith("/latest"):
            fail(EXIT_CONFIG, "HFGATE_TOKEN_SECRET_VERSION must name a pinned version "
                              "(projects/N/secrets/S/versions/V)")
        env["HF_TOKEN"] = read_secret(version, access_token())
        sys.stderr.write(f"hfgate-bootstrap: token read from {version}; starting {argv[0]}\n")
    elif not checks and not trusted and not any(env.get(k) for k in ("HFGATE_LAUNCH", "HFGATE_RESUME", "HF_TOKEN")):
        fail(EXIT_CONFIG, "nothing to do: set HFGATE_TOKEN_SECRET_VERSION, HFGATE_VERIFY, HFGATE_LAUNCH or"
                          " HFGATE_RESUME")
    distributed = env.get("HFGATE_LAUNCH") == "torchrun"
    record_checkpoints(argv, env)            # before resume_args pops HFGATE_RESUME
    argv = quiet_library_noise(launch_command(resume_args(argv, env), env), env, distributed)
    sys.stderr.flush()
    if distributed:
        try:
            sys.exit(supervise(argv, env))
        except OSError as exc:
            fail(EXIT_CONFIG, f"cannot start {argv[0]}: {exc}")
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        fail(EXIT_CONFIG, f"cannot start {argv[0]}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])

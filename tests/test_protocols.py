"""Table-driven protocol tests: the official clients against the local cloud raise or return what
shared/reference/hub-protocol.md and the services document, case by case.

Each service's cases run in one child process (the clients read their endpoints at import), which prints one
outcome per case; the test asserts each outcome separately.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HUB_SCRIPT = r'''
import json, sys
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub import errors as E
tokens, cache = json.loads(sys.argv[1]), sys.argv[2]
api = HfApi()
G, M, P = "hfgate-demo/tiny-gated-lm", "hfgate-demo/tiny-manual-lm", "acme/private-lm"

def outcome(fn):
    try:
        r = fn()
        return {"ok": True, "value": r}
    except Exception as e:
        resp = getattr(e, "response", None)
        return {"ok": False, "type": type(e).__name__, "status": getattr(resp, "status_code", None),
                "message": str(e)[:400], "headers": dict(resp.headers) if resp is not None else {}}

cases = {
 "whoami read": lambda: api.whoami(token=tokens["alice-read"])["auth"]["accessToken"]["role"],
 "whoami fine-grained": lambda: api.whoami(token=tokens["alice-fg-nogated"])["auth"]["accessToken"]["fineGrained"]["canReadGatedRepos"],
 "whoami revoked": lambda: api.whoami(token=tokens["alice-revoked"]),
 "whoami placeholder": lambda: api.whoami(token="$HF_TOKEN"),
 "gated info without token": lambda: api.model_info(G, token=False).gated,
 "gated file without token": lambda: hf_hub_download(G, "config.json", token=False, cache_dir=cache),
 "gated not accepted": lambda: api.auth_check(G, token=tokens["bob-read"]),
 "gated pending": lambda: api.auth_check(M, token=tokens["carol-read"]),
 "gated rejected": lambda: api.auth_check(M, token=tokens["dave-read"]),
 "gated accepted": lambda: api.auth_check(G, token=tokens["alice-read"]),
 "fine-grained without gated read": lambda: hf_hub_download(G, "config.json", token=tokens["alice-fg-nogated"], cache_dir=cache),
 "private anonymous": lambda: api.model_info(P, token=False),
 "private without access": lambda: api.model_info(P, token=tokens["bob-read"]),
 "private member": lambda: api.model_info(P, token=tokens["alice-read"]).private,
 "wrong case id": lambda: api.model_info("hfgate-demo/Tiny-Gated-LM", token=tokens["alice-read"]),
 "missing revision": lambda: api.model_info(G, revision="v9", token=tokens["alice-read"]),
 "missing file": lambda: hf_hub_download(G, "nope.json", token=tokens["alice-read"], cache_dir=cache),
 "sha is 40 hex": lambda: len(api.model_info(G, token=tokens["alice-read"]).sha),
 "dataset download": lambda: open(hf_hub_download("hfgate-demo/tiny-chat", "train.jsonl", repo_type="dataset", token=tokens["alice-read"], cache_dir=cache)).read().splitlines().__len__(),
 "paginated tree": lambda: len([e for e in api.list_repo_tree("hfgate-demo/many-files", recursive=True, token=tokens["alice-read"])]),
}
out = {name: outcome(fn) for name, fn in cases.items()}
print(json.dumps(out, default=str))
'''

HUB_EXPECT = {
    "whoami read": ("ok", "read"),
    "whoami fine-grained": ("ok", False),
    "whoami revoked": ("HfHubHTTPError", 401),
    "whoami placeholder": ("HfHubHTTPError", 401),
    "gated info without token": ("ok", "auto"),
    "gated file without token": ("GatedRepoError", 401),
    "gated not accepted": ("GatedRepoError", 403),
    "gated pending": ("GatedRepoError", 403),
    "gated rejected": ("GatedRepoError", 403),
    "gated accepted": ("ok", None),
    "fine-grained without gated read": ("GatedRepoError", 403),
    "private anonymous": ("RepositoryNotFoundError", 401),
    "private without access": ("RepositoryNotFoundError", 404),
    "private member": ("ok", True),
    "wrong case id": ("RepositoryNotFoundError", 404),
    "missing revision": ("RevisionNotFoundError", 404),
    "missing file": ("RemoteEntryNotFoundError", 404),
    "sha is 40 hex": ("ok", 40),
    "dataset download": ("ok", 8),
    "paginated tree": ("ok", 121),
}
MESSAGES = {
    "gated file without token": "You must have access to it and be authenticated",
    "gated not accepted": "not in the authorized list",
    "gated pending": "awaiting a review",
    "gated rejected": "rejected",
}


@pytest.fixture(scope="module")
def hub_outcomes(cloud, tmp_path_factory):
    if "hfgate-demo/many-files" not in cloud.hub_state.repos:
        cloud.hub_state.add_repo("hfgate-demo/many-files", {f"shard-{i:03d}.txt": b"x" for i in range(121)})
    env = {**os.environ, **cloud.env()}
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT, json.dumps(cloud.hub_tokens),
                           str(tmp_path_factory.mktemp("hfcache"))], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(HUB_EXPECT))
def test_hub_case(hub_outcomes, case):
    kind, expected = HUB_EXPECT[case]
    got = hub_outcomes[case]
    if kind == "ok":
        assert got["ok"], got
        assert got["value"] == expected
    else:
        assert not got["ok"] and got["type"] == kind, got
        assert got["status"] == expected, got
        if case in MESSAGES:
            assert MESSAGES[case] in got["message"], got["message"]


FAULT_SCRIPT = r'''
import json, sys, time
from huggingface_hub import HfApi
api = HfApi()
t = sys.argv[1]
res = {}
for name in sys.argv[2:]:
    try:
        api.model_info("hfgate-demo/tiny-open-lm", token=t)
        res[name] = {"ok": True}
    except Exception as e:
        r = getattr(e, "response", None)
        res[name] = {"ok": False, "type": type(e).__name__, "status": getattr(r, "status_code", None),
                     "headers": {k.lower(): v for k, v in (r.headers.items() if r is not None else [])}}
print(json.dumps(res))
'''


@pytest.mark.parametrize("knob,first", [
    ({"rate_limit": 1}, {"ok": False, "status": 429}),
    ({"fail_503": 1}, {"ok": False, "status": 503}),
    ({"drop": 1}, {"ok": False}),
])
def test_hub_fault_knobs_fail_once_then_recover(cloud, knob, first):
    cloud.hub_state.set_fault("/api/models/hfgate-demo/tiny-open-lm", **knob)
    try:
        proc = subprocess.run([sys.executable, "-c", FAULT_SCRIPT, cloud.hub_tokens["alice-read"], "first", "second"],
                              env={**os.environ, **cloud.env()}, cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        cloud.hub_state.clear_faults()
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    for k, v in first.items():
        assert res["first"][k] == v, res
    assert res["second"]["ok"]
    if knob.get("rate_limit"):
        assert "ratelimit" in res["first"]["headers"] and res["first"]["headers"]["retry-after"] == "1"


JOBS_SCRIPT = r'''
import json, sys, time
from huggingface_hub import HfApi
api, t = HfApi(), sys.argv[1]
job = api.run_job(image="python:3.12", command=["python3", "-c", "import os; print('env', os.environ['MODE']); print('has secret', bool(os.environ.get('HF_TOKEN')))"],
                  env={"MODE": "demo"}, secrets={"HF_TOKEN": t}, flavor="cpu-basic", namespace="alice", token=t)
deadline = time.time() + 60
while api.inspect_job(job_id=job.id, namespace="alice", token=t).status.stage not in ("COMPLETED", "ERROR") and time.time() < deadline:
    time.sleep(0.1)
info = api.inspect_job(job_id=job.id, namespace="alice", token=t)
logs = list(api.fetch_job_logs(job_id=job.id, namespace="alice", token=t))
long = api.run_job(image="python:3.12", command=["python3", "-c", "import time; time.sleep(30)"], namespace="alice", token=t)
api.cancel_job(job_id=long.id, namespace="alice", token=t)
cancelled = api.inspect_job(job_id=long.id, namespace="alice", token=t).status.stage
print(json.dumps({"stage": info.status.stage, "env": info.environment, "secrets": info.secrets, "logs": logs,
                  "shown": repr(info), "cancelled": cancelled}))
'''


def test_hub_jobs_api_through_the_official_client(cloud):
    token = cloud.hub_tokens["alice-write"]
    proc = subprocess.run([sys.executable, "-c", JOBS_SCRIPT, token], env={**os.environ, **cloud.env()}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["stage"] == "COMPLETED" and out["env"] == {"MODE": "demo"}
    assert out["secrets"] == ["HF_TOKEN"] or out["secrets"] == {"HF_TOKEN": None} or "HF_TOKEN" in out["secrets"]
    assert token not in proc.stdout                               # secrets are never shown back
    assert "env demo" in out["logs"] and "has secret True" in out["logs"]
    assert out["cancelled"] == "CANCELED"


SM_SCRIPT = r'''
import json, sys
import google_crc32c
from google.api_core import exceptions as gexc
from google.cloud.secretmanager_v1 import types as sm
from jobs import endpoints
c = endpoints.secret_manager()
secret = sys.argv[1]
def outcome(fn):
    try:
        return {"ok": True, "value": fn()}
    except gexc.GoogleAPICallError as e:
        return {"ok": False, "type": type(e).__name__, "message": e.message}
def add(data):
    return c.add_secret_version(parent=secret, payload=sm.SecretPayload(data=data, data_crc32c=google_crc32c.value(data))).name
v1 = add(b"hf_one"); v2 = add(b"hf_two")
cases = {
 "latest is the newest": lambda: c.access_secret_version(name=secret + "/versions/latest").name.endswith(v2.rsplit("/", 1)[1]),
 "crc32c returned": lambda: c.access_secret_version(name=v1).payload.data_crc32c == google_crc32c.value(b"hf_one"),
 "bad crc rejected": lambda: c.add_secret_version(parent=secret, payload=sm.SecretPayload(data=b"x", data_crc32c=1)),
 "list newest first": lambda: [v.name for v in c.list_secret_versions(parent=secret)][:2] == [v2, v1],
 "missing secret": lambda: c.access_secret_version(name=secret + "-nope/versions/1"),
 "missing version": lambda: c.access_secret_version(name=secret + "/versions/999"),
 "disabled version": lambda: (c.disable_secret_version(name=v1), c.access_secret_version(name=v1)),
 "enabled again": lambda: c.enable_secret_version(name=v1) and c.access_secret_version(name=v1).payload.data.decode(),
 "destroyed version": lambda: (c.destroy_secret_version(name=v1), c.access_secret_version(name=v1)),
 "get secret": lambda: bool(c.get_secret(name=secret).replication.user_managed.replicas),
 "create secret": lambda: c.create_secret(parent=secret.split("/secrets/")[0], secret_id=sys.argv[2], secret=sm.Secret(
     replication=sm.Replication(automatic=sm.Replication.Automatic()))).name.endswith("/secrets/" + sys.argv[2]),
 "create duplicate": lambda: c.create_secret(parent=secret.split("/secrets/")[0], secret_id=sys.argv[2], secret=sm.Secret(
     replication=sm.Replication(automatic=sm.Replication.Automatic()))),
 "create without replication": lambda: c.create_secret(parent=secret.split("/secrets/")[0], secret_id=sys.argv[2] + "-x", secret=sm.Secret()),
 "list secrets": lambda: sys.argv[2] in [s.name.rsplit("/", 1)[1] for s in c.list_secrets(parent=secret.split("/secrets/")[0])],
}
print(json.dumps({k: outcome(f) for k, f in cases.items()}, default=str))
'''

SM_EXPECT = {
    "latest is the newest": ("ok", True),
    "crc32c returned": ("ok", True),
    "bad crc rejected": ("InvalidArgument", "Checksum mismatch"),
    "list newest first": ("ok", True),
    "missing secret": ("NotFound", "not found"),
    "missing version": ("NotFound", "Secret Version"),
    "disabled version": ("FailedPrecondition", "DISABLED state"),
    "enabled again": ("ok", "hf_one"),
    "destroyed version": ("FailedPrecondition", "DESTROYED state"),
    "get secret": ("ok", True),
    "create secret": ("ok", True),
    "create duplicate": ("AlreadyExists", "already exists"),
    "create without replication": ("InvalidArgument", "replication"),
    "list secrets": ("ok", True),
}


@pytest.fixture(scope="module")
def sm_outcomes(cloud):
    from google.cloud.secretmanager_v1 import types as sm
    sid = "hfg-local-protocol-test"
    if sid not in cloud.secrets.secrets:
        cloud.secrets.create_secret(cloud.admin, f"projects/{cloud.project_id}", sid, sm.Secret(
            replication=sm.Replication(user_managed=sm.Replication.UserManaged(
                replicas=[sm.Replication.UserManaged.Replica(location="us-central1")]))))
    env = {**os.environ, **cloud.env(as_member=cloud.admin)}
    proc = subprocess.run([sys.executable, "-c", SM_SCRIPT, f"projects/{cloud.project_id}/secrets/{sid}",
                           f"hfg-local-created-{os.getpid()}"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", sorted(SM_EXPECT))
def test_secret_manager_case(sm_outcomes, case):
    kind, expected = SM_EXPECT[case]
    got = sm_outcomes[case]
    if kind == "ok":
        assert got["ok"] and got["value"] == expected, got
    else:
        assert not got["ok"] and got["type"] == kind and expected in got["message"], got


VERTEX_SCRIPT = r'''
import json, sys, time
from google.api_core import exceptions as gexc
from google.cloud.aiplatform_v1 import types as ai
from jobs import endpoints
client = endpoints.vertex("us-central1")
parent = "projects/hfgate-local/locations/us-central1"
SA = sys.argv[1]
def job(machine="e2-standard-4", accel=None, count=0, cmd=("true",), sa=SA, env=(), name="t", image="x", labels=None,
        disk=None, kms=None):
    spec = ai.MachineSpec(machine_type=machine)
    if accel:
        spec.accelerator_type, spec.accelerator_count = accel, count
    j = ai.CustomJob(display_name=name, labels=labels or {}, job_spec=ai.CustomJobSpec(service_account=sa,
        base_output_directory={"output_uri_prefix": "gs://hfgate-local-hfg-local-artifacts/proto"},
        worker_pool_specs=[ai.WorkerPoolSpec(replica_count=1, machine_spec=spec, container_spec=ai.ContainerSpec(
            image_uri=image, command=list(cmd), env=[ai.EnvVar(name=k, value=v) for k, v in env]),
            disk_spec=ai.DiskSpec(boot_disk_type=disk) if disk else None)]))
    if kms:
        j.encryption_spec = ai.EncryptionSpec(kms_key_name=kms)
    return j
def outcome(fn):
    try:
        return {"ok": True, "value": fn()}
    except gexc.GoogleAPICallError as e:
        return {"ok": False, "type": type(e).__name__, "message": e.message}
def run(j):
    j = client.create_custom_job(parent=parent, custom_job=j)
    for _ in range(400):
        j = client.get_custom_job(name=j.name)
        if j.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"): break
        time.sleep(0.05)
    return j
env_probe = ("sh", "-c", "echo AIP=$AIP_MODEL_DIR JOB=$CLOUD_ML_JOB_ID SPEC=${CLUSTER_SPEC:+set}")
cases = {
 "unknown machine": lambda: client.create_custom_job(parent=parent, custom_job=job(machine="g9-huge")),
 "accelerator not for machine": lambda: client.create_custom_job(parent=parent, custom_job=job(machine="g2-standard-8", accel="NVIDIA_H100_80GB", count=1)),
 "accelerator count wrong": lambda: client.create_custom_job(parent=parent, custom_job=job(machine="g2-standard-8", accel="NVIDIA_L4", count=3)),
 "no service account": lambda: client.create_custom_job(parent=parent, custom_job=job(sa="")),
 "too many env vars": lambda: client.create_custom_job(parent=parent, custom_job=job(env=[(f"V{i}", "x") for i in range(101)])),
 "duplicate env names": lambda: client.create_custom_job(parent=parent, custom_job=job(env=[("A", "1"), ("A", "2")])),
 "display name too long": lambda: client.create_custom_job(parent=parent, custom_job=job(name="x" * 129)),
 "no image": lambda: client.create_custom_job(parent=parent, custom_job=job(image="")),
 "bad label": lambda: client.create_custom_job(parent=parent, custom_job=job(labels={"Bad": "x"})),
 "act-as denied": lambda: client.create_custom_job(parent=parent, custom_job=job(sa="other@hfgate-local.iam.gserviceaccount.com")),
 "key in another region": lambda: client.create_custom_job(parent=parent, custom_job=job(kms="projects/k/locations/europe-west4/keyRings/r/cryptoKeys/k")),
 "A3 Ultra on a persistent disk": lambda: client.create_custom_job(parent=parent, custom_job=job(machine="a3-ultragpu-8g", accel="NVIDIA_H200_141GB", count=8, disk="pd-ssd")),
 "get missing": lambda: client.get_custom_job(name=parent + "/customJobs/123"),
 "succeeds with Vertex env": lambda: (lambda j: [j.state.name, j.start_time is not None, j.end_time is not None])(run(job(cmd=env_probe, labels={"proto": "env"}))),
 "fails with exit code and tail": lambda: (lambda j: [j.state.name, j.error.message])(run(job(cmd=("sh", "-c", "echo boom-tail; exit 7")))),
 "cancel finished": lambda: client.cancel_custom_job(name=run(job()).name),
 "list by label": lambda: sorted({j.labels["proto"] for j in client.list_custom_jobs(request={"parent": parent, "filter": 'labels.proto="env"'})}),
}
print(json.dumps({k: outcome(f) for k, f in cases.items()}, default=str))
'''

VERTEX_EXPECT = {
    "unknown machine": ("InvalidArgument", "machine_spec"),
    "accelerator not for machine": ("InvalidArgument", "machine_spec"),
    "accelerator count wrong": ("InvalidArgument", "machine_spec"),
    "no service account": ("InvalidArgument", "service_account"),
    "too many env vars": ("InvalidArgument", "at most 100"),
    "duplicate env names": ("InvalidArgument", "unique"),
    "display name too long": ("InvalidArgument", "display_name"),
    "no image": ("InvalidArgument", "image_uri"),
    "bad label": ("InvalidArgument", "labels"),
    "act-as denied": ("PermissionDenied", "iam.serviceAccounts.actAs"),
    # Vertex AI CMEK: a job's key must be in its region. DiskSpec: A3 Ultra machines take hyperdisk-balanced.
    "key in another region": ("InvalidArgument", "encryption_spec.kms_key_name"),
    "A3 Ultra on a persistent disk": ("InvalidArgument", "hyperdisk-balanced"),
    "get missing": ("NotFound", "does not exist"),
    "succeeds with Vertex env": ("ok", ["JOB_STATE_SUCCEEDED", True, True]),
    "cancel finished": ("FailedPrecondition", "Cannot cancel"),
    "list by label": ("ok", ["env"]),
}


@pytest.fixture(scope="module")
def vertex_outcomes(cloud):
    env = {**os.environ, **cloud.env()}
    proc = subprocess.run([sys.executable, "-c", VERTEX_SCRIPT, cloud.outputs.trainer_email], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", sorted(VERTEX_EXPECT))
def test_vertex_case(vertex_outcomes, case):
    kind, expected = VERTEX_EXPECT[case]
    got = vertex_outcomes[case]
    if kind == "ok":
        assert got["ok"] and got["value"] == expected, got
    else:
        assert not got["ok"] and got["type"] == kind and expected in got["message"], got


def test_vertex_failed_job_carries_the_exit_code_and_log_tail(vertex_outcomes, cloud):
    state, message = vertex_outcomes["fails with exit code and tail"]["value"]
    assert state == "JOB_STATE_FAILED" and "non-zero status of 7" in message and "boom-tail" in message
    job = next(j for j in cloud.jobs.jobs.values() if j.labels.get("proto") == "env")
    lines = [line for _, line in cloud.jobs.logs[job.name.rsplit("/", 1)[-1]]]
    assert any(line.startswith("AIP=") and "/proto/model/" in line and "JOB=" in line and "SPEC=set" in line
               for line in lines), lines


def test_secret_manager_rest_access_and_metadata_server_rules(cloud):
    """The REST `:access` form (what the stdlib bootstrap uses) and the metadata server's header rule."""
    import base64
    import urllib.error
    import urllib.request
    md = cloud.metadata_for(cloud.trainer)
    base = f"http://{md.hostport}/computeMetadata/v1/instance/service-accounts/default"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/token", timeout=5)
    assert err.value.code == 403                                   # Metadata-Flavor: Google is required
    req = lambda path: urllib.request.Request(f"{base}/{path}", headers={"Metadata-Flavor": "Google"})  # noqa: E731
    email = urllib.request.urlopen(req("email"), timeout=5).read().decode()
    assert email == cloud.outputs.trainer_email
    token = json.loads(urllib.request.urlopen(req("token"), timeout=5).read())["access_token"]
    set_token = __import__("tests.conftest", fromlist=["set_token"]).set_token
    version = set_token(cloud, cloud.hub_tokens["alice-read"])
    url = f"{cloud.rest.url}/v1/{version}:access"
    import ssl
    tls = ssl.create_default_context(cafile=cloud.env()["SSL_CERT_FILE"])   # the local cloud's CA, as its env says
    assert url.startswith("https://")
    body = json.loads(urllib.request.urlopen(urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}"}), timeout=5, context=tls).read())
    assert base64.b64decode(body["payload"]["data"]).decode() == cloud.hub_tokens["alice-read"]
    assert "dataCrc32c" in body["payload"]
    intruder = cloud.metadata_for("serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com")
    bad = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://{intruder.hostport}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"}), timeout=5).read())["access_token"]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {bad}"}), timeout=5,
                               context=tls)
    assert err.value.code == 403 and b"PERMISSION_DENIED" in err.value.read()

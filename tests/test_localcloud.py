"""The local cloud answers the official clients as the real services do, and `up` starts fast and stops clean."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import pytest

from tests.conftest import ROOT


def test_up_starts_and_leaves_nothing_running(tmp_path, synth_dir):
    """How fast it starts is a benchmark figure (bench/run.py: localcloud_up), not a timed test."""
    from review.plan import synthesized
    proc = subprocess.Popen([sys.executable, "-m", "localcloud", "up", "--state-dir", str(tmp_path),
                             "--plan", str(synthesized(synth_dir, "local"))], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = proc.stdout.readline()
    assert "local cloud up" in first, first
    env_file = (tmp_path / "localcloud.env").read_text()
    assert "HF_ENDPOINT=https://127.0.0.1:" in env_file and "GCE_METADATA_HOST=" in env_file
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "fake-gcs-server should run as a child"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()


def test_hub_downloads_follow_the_cdn_redirect_without_the_token(cloud):
    code = """
import sys
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError
p = hf_hub_download("hfgate-demo/tiny-gated-lm", "model.safetensors", token=sys.argv[1], cache_dir=sys.argv[2])
assert len(open(p, "rb").read()) == int(sys.argv[4])      # the seeded tiny Llama's weights, whole
d = snapshot_download("hfgate-demo/tiny-gated-lm", token=sys.argv[1], cache_dir=sys.argv[2])
for call, exc in [(lambda: hf_hub_download("hfgate-demo/tiny-gated-lm", "config.json", token=False), GatedRepoError),
                  (lambda: hf_hub_download("hfgate-demo/tiny-gated-lm", "config.json", token=sys.argv[3]), GatedRepoError),
                  (lambda: hf_hub_download("acme/private-lm", "config.json", token=sys.argv[3]), RepositoryNotFoundError),
                  (lambda: hf_hub_download("hfgate-demo/tiny-open-lm", "config.json", revision="nope"), RevisionNotFoundError)]:
    try:
        call()
        raise SystemExit("no error")
    except exc:
        pass
print("ok")
"""
    env = {**os.environ, **cloud.env()}
    env.pop("HF_TOKEN", None)
    from localcloud.tinymodel import seed_model
    proc = subprocess.run([sys.executable, "-c", code, cloud.hub_tokens["alice-read"], str(cloud.state_dir / "hf"),
                           cloud.hub_tokens["bob-read"], str(len(seed_model()["model.safetensors"]))], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr
    cdn = [r for r in cloud.hub_state.log if r["path"].startswith("cdn:")]
    assert cdn and not any(r["authorization"] for r in cdn), "the CDN must be reached without the token"


def test_vertex_validates_like_the_service_and_cancels(cloud):
    code = """
import sys
from google.api_core import exceptions as gexc
from google.cloud.aiplatform_v1 import types as ai
from jobs import endpoints
client = endpoints.vertex("us-central1")
parent = "projects/hfgate-local/locations/us-central1"
def job(machine="e2-standard-4", cmd=("sleep", "30"), sa=sys.argv[1]):
    return ai.CustomJob(display_name="t", job_spec=ai.CustomJobSpec(service_account=sa, worker_pool_specs=[
        ai.WorkerPoolSpec(replica_count=1, machine_spec=ai.MachineSpec(machine_type=machine),
                          container_spec=ai.ContainerSpec(image_uri="x", command=list(cmd)))]))
try:
    client.create_custom_job(parent=parent, custom_job=job(machine="g9-huge"))
    raise SystemExit("accepted a bad machine")
except gexc.InvalidArgument as e:
    assert "machine_spec" in e.message
try:
    client.create_custom_job(parent=parent, custom_job=job(sa="other@hfgate-local.iam.gserviceaccount.com"))
    raise SystemExit("accepted act-as without the grant")
except gexc.PermissionDenied as e:
    assert "actAs" in e.message
j = client.create_custom_job(parent=parent, custom_job=job())
import time
for _ in range(100):
    if client.get_custom_job(name=j.name).state == ai.JobState.JOB_STATE_RUNNING: break
    time.sleep(0.05)
client.cancel_custom_job(name=j.name)
for _ in range(100):
    s = client.get_custom_job(name=j.name).state
    if s == ai.JobState.JOB_STATE_CANCELLED: break
    time.sleep(0.05)
assert s == ai.JobState.JOB_STATE_CANCELLED, s
print("ok")
"""
    env = {**os.environ, **cloud.env()}
    proc = subprocess.run([sys.executable, "-c", code, cloud.outputs.trainer_email], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_secret_manager_errors_match_the_service(cloud):
    from localcloud.secretmanager import RpcError
    with pytest.raises(RpcError) as err:
        cloud.secrets.access(cloud.trainer, f"projects/{cloud.project_id}/secrets/missing/versions/latest")
    assert err.value.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND)
    with pytest.raises(RpcError) as err:
        cloud.secrets.access(None, f"{cloud.outputs.token_secret}/versions/latest")
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_cli_help_does_not_load_the_provider_bindings():
    code = "import sys; sys.argv=['hfgate','--help']\nimport jobs.cli\ntry:\n    jobs.cli.main()\nexcept SystemExit: pass\n" \
           "assert not [m for m in sys.modules if m.startswith(('cdktn', 'jsii', 'google.cloud.', 'huggingface_hub'))]," \
           " sorted(m for m in sys.modules if m.startswith(('cdktn','jsii','google.cloud.','huggingface_hub')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exit codes:" in proc.stdout


def test_in_process_calls_run_as_the_member_each_block_names(cloud):
    """google-auth reads GCE_METADATA_HOST once, at import: `cloud.environ(as_member=...)` must still give each
    block its own member's identity, in any order, and leave no identity behind after the block."""
    import google_crc32c
    from google.api_core import exceptions as gexc
    from google.cloud.secretmanager_v1 import types as sm

    from jobs import endpoints

    def add_version() -> str:
        data = b"hf_" + b"x" * 34
        client = endpoints.secret_manager()
        try:
            client.add_secret_version(parent=cloud.outputs.token_secret, payload=sm.SecretPayload(
                data=data, data_crc32c=google_crc32c.value(data)))
            return "added"
        except gexc.PermissionDenied:
            return "denied"
        finally:
            client.transport.close()

    results = []
    for member in (None, cloud.admin, None, cloud.admin):
        with cloud.environ(as_member=member):
            results.append(add_version())
    assert results == ["denied", "added", "denied", "added"]     # the submitter may not add versions; the admin may
    from google.auth.compute_engine import _metadata
    assert _metadata._GCE_METADATA_HOST == (os.environ.get("GCE_METADATA_HOST") or "metadata.google.internal")

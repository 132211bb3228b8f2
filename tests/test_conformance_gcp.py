"""Google's official clients against the local cloud with only an endpoint change: TLS with the local cloud's CA
through the standard trust settings, no channel or credential tricks. The Secret Manager calls are written as
Google's published code samples make them (create, add version, access, list, disable/enable/destroy, IAM
grant/revoke, labels, delete); each is compared with the real service's behaviour (results, error types)."""
from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

from tests.conftest import ROOT

SAMPLES = r"""
import json, sys
import google_crc32c
from google.api_core import exceptions
from google.cloud import secretmanager
from google.cloud.aiplatform_v1 import JobServiceClient

endpoint, project, region, vertex_endpoint, secret_id = sys.argv[1:6]
client = secretmanager.SecretManagerServiceClient(client_options={"api_endpoint": endpoint})
out = {}
# create_secret.py
parent = f"projects/{project}"
secret = client.create_secret(request={"parent": parent, "secret_id": secret_id,
                                       "secret": {"replication": {"automatic": {}}}})
out["created"] = secret.name
try:
    client.create_secret(request={"parent": parent, "secret_id": secret_id, "secret": {"replication": {"automatic": {}}}})
except exceptions.AlreadyExists as e:
    out["duplicate"] = type(e).__name__
# add_secret_version.py
payload = "my super secret data".encode("UTF-8")
crc32c = google_crc32c.Checksum()
crc32c.update(payload)
version = client.add_secret_version(request={"parent": secret.name, "payload": {"data": payload, "data_crc32c": int(crc32c.hexdigest(), 16)}})
out["version"] = version.name.rsplit("/", 1)[-1]
# access_secret_version.py
response = client.access_secret_version(request={"name": f"{secret.name}/versions/latest"})
crc32c = google_crc32c.Checksum()
crc32c.update(response.payload.data)
out["access"] = [response.payload.data.decode("UTF-8"), response.payload.data_crc32c == int(crc32c.hexdigest(), 16)]
# list_secrets.py / list_secret_versions.py
out["listed"] = secret.name in [s.name for s in client.list_secrets(request={"parent": parent})]
out["versions"] = [v.name.rsplit("/", 1)[-1] for v in client.list_secret_versions(request={"parent": secret.name})]
# disable / enable / destroy
out["disabled"] = client.disable_secret_version(request={"name": version.name}).state.name
try:
    client.access_secret_version(request={"name": version.name})
except exceptions.FailedPrecondition as e:
    out["access_disabled"] = type(e).__name__
out["enabled"] = client.enable_secret_version(request={"name": version.name}).state.name
out["destroyed"] = client.destroy_secret_version(request={"name": version.name}).state.name
# iam_grant_access.py / iam_revoke_access.py
member = "serviceAccount:reader@%s.iam.gserviceaccount.com" % project
policy = client.get_iam_policy(request={"resource": secret.name})
policy.bindings.add(role="roles/secretmanager.secretAccessor", members=[member])
policy = client.set_iam_policy(request={"resource": secret.name, "policy": policy})
out["granted"] = [b.role for b in policy.bindings if member in b.members]
policy = client.get_iam_policy(request={"resource": secret.name})
for b in list(policy.bindings):
    if b.role == "roles/secretmanager.secretAccessor" and member in b.members:
        b.members.remove(member)
policy = client.set_iam_policy(request={"resource": secret.name, "policy": policy})
out["revoked"] = [b.role for b in policy.bindings if member in b.members]
# update_secret.py (labels)
secret = client.update_secret(request={"secret": {"name": secret.name, "labels": {"secretmanager": "rocks"}},
                                       "update_mask": {"paths": ["labels"]}})
out["labels"] = dict(secret.labels)
# delete_secret.py
client.delete_secret(request={"name": secret.name})
try:
    client.get_secret(request={"name": secret.name})
except exceptions.NotFound as e:
    out["deleted"] = type(e).__name__
# Vertex AI's JobServiceClient, also with only an endpoint change
jobs = JobServiceClient(client_options={"api_endpoint": vertex_endpoint})
out["jobs_listed"] = isinstance(list(jobs.list_custom_jobs(parent=f"projects/{project}/locations/{region}")), list)
try:
    jobs.get_custom_job(name=f"projects/{project}/locations/{region}/customJobs/1")
except exceptions.NotFound as e:
    out["job_missing"] = type(e).__name__
print(json.dumps(out))
"""


def test_secret_manager_samples_and_the_vertex_client_work_with_only_an_endpoint_change(cloud):
    env = {**os.environ, **cloud.env(as_member=cloud.admin)}
    endpoint = env.pop("HFGATE_SECRETMANAGER_ENDPOINT")
    vertex = env.pop("HFGATE_VERTEX_ENDPOINT")
    # TLS, trusted the standard way: the bundle holds the local CA (after the usual public roots)
    roots = Path(env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]).read_bytes()
    assert (Path(env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]).parent / "ca.pem").read_bytes() in roots
    proc = subprocess.run([sys.executable, "-c", SAMPLES, endpoint, cloud.project_id, cloud.region, vertex,
                           f"samples-{os.getpid()}"], cwd="/", env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["created"].endswith(f"/secrets/samples-{os.getpid()}") and out["duplicate"] == "AlreadyExists"
    assert out["version"] == "1" and out["access"] == ["my super secret data", True]
    assert out["listed"] is True and out["versions"] == ["1"]
    assert (out["disabled"], out["access_disabled"], out["enabled"], out["destroyed"]) == (
        "DISABLED", "FailedPrecondition", "ENABLED", "DESTROYED")
    assert out["granted"] == ["roles/secretmanager.secretAccessor"] and out["revoked"] == []
    assert out["labels"] == {"secretmanager": "rocks"} and out["deleted"] == "NotFound"
    assert out["jobs_listed"] is True and out["job_missing"] == "NotFound"


def test_plaintext_is_refused_like_a_real_endpoint(cloud):
    """The gRPC port speaks TLS only: a plaintext channel fails, as against googleapis.com."""
    code = ("import grpc, sys\nch = grpc.insecure_channel(sys.argv[1])\n"
            "try:\n    grpc.channel_ready_future(ch).result(timeout=3)\n    print('connected')\n"
            "except grpc.FutureTimeoutError:\n    print('refused')\n")
    proc = subprocess.run([sys.executable, "-c", code, cloud.env()["HFGATE_SECRETMANAGER_ENDPOINT"]],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert proc.stdout.strip() == "refused"


def test_the_rest_endpoint_answers_every_method_and_keeps_the_connection_in_step(cloud):
    import http.client
    import ssl
    import urllib.parse
    env = cloud.env()
    url = urllib.parse.urlsplit(env["HFGATE_GOOGLEAPIS_REST"])
    ctx = ssl.create_default_context(cafile=env["REQUESTS_CA_BUNDLE"])
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=10)
    for method in ("PUT", "DELETE", "PATCH", "POST"):
        conn.request(method, "/v1/no-such-route", body=b'{"x": 1}', headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 404 and json.loads(resp.read())["error"]["status"] == "NOT_FOUND", method
        conn.request("POST", "/v2/entries:list", body=b"{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()                      # same connection: answered, unauthenticated as expected
        assert resp.status == 401 and json.loads(resp.read())["error"]["status"] == "UNAUTHENTICATED"
    conn.close()


SDK = r"""
import json, sys, time
from google.api_core import exceptions
from google.cloud import aiplatform

endpoint, project, region, bucket, sa, tag = sys.argv[1:7]
# The high-level SDK exactly as its documentation shows it, with only api_endpoint added.
aiplatform.init(project=project, location=region, staging_bucket=f"gs://{bucket}", api_endpoint=endpoint)
out = {}


def pool(code):
    return [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
             "container_spec": {"image_uri": "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4:latest",
                                "command": ["python3", "-c", code]}}]


job = aiplatform.CustomJob(display_name=f"sdk-long-{tag}", worker_pool_specs=pool("import time; time.sleep(120)"),
                           labels={"suite": tag})
job.submit(service_account=sa)
out["resource"] = job.resource_name.split("/customJobs/")[0]
out["submitted_state"] = job.state.name
out["output_dir"] = job.job_spec.base_output_directory.output_uri_prefix.startswith(f"gs://{bucket}/aiplatform-custom-job-")
again = aiplatform.CustomJob.get(job.resource_name)
out["get"] = [again.display_name, again.labels.get("suite")]
out["list_by_name"] = [j.display_name for j in aiplatform.CustomJob.list(filter=f'display_name="sdk-long-{tag}"')]
out["list_by_label"] = len(aiplatform.CustomJob.list(filter=f'labels.suite="{tag}"'))
try:
    aiplatform.CustomJob.list(filter="create_time>2020")
    out["bad_filter"] = "accepted"
except exceptions.InvalidArgument as e:
    out["bad_filter"] = type(e).__name__
job.cancel()
deadline = time.time() + 30
while job.state.name not in ("JOB_STATE_CANCELLED", "JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED") and time.time() < deadline:
    time.sleep(0.5)
out["after_cancel"] = job.state.name
try:
    job.cancel()
except exceptions.FailedPrecondition as e:
    out["cancel_twice"] = type(e).__name__
# run() = submit + wait: a job that succeeds, and one that fails with the SDK's RuntimeError
ok = aiplatform.CustomJob(display_name=f"sdk-ok-{tag}", worker_pool_specs=pool("print('hello from the SDK')"))
ok.run(service_account=sa)
out["run_ok"] = ok.state.name
bad = aiplatform.CustomJob(display_name=f"sdk-bad-{tag}", worker_pool_specs=pool("raise SystemExit(3)"))
try:
    bad.run(service_account=sa)
except RuntimeError as e:
    out["run_failed"] = [bad.state.name, "Job failed with" in str(e)]
try:
    aiplatform.CustomJob(display_name=f"sdk-gpu-{tag}", worker_pool_specs=[{
        "machine_spec": {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 1},
        "replica_count": 1, "container_spec": {"image_uri": "x", "command": ["true"]}}]).submit(service_account=sa)
    out["bad_machine"] = "accepted"
except exceptions.InvalidArgument as e:
    out["bad_machine"] = type(e).__name__
try:
    aiplatform.CustomJob.get(f"projects/{project}/locations/{region}/customJobs/123")
except exceptions.NotFound as e:
    out["missing"] = type(e).__name__
print(json.dumps(out))
"""


def test_the_high_level_aiplatform_sdk_submits_lists_gets_and_cancels(cloud):
    """google.cloud.aiplatform's CustomJob, as its docs show it (init with a staging bucket, submit, state, get,
    list with filters, cancel, run), against the local Vertex AI with only `api_endpoint` set."""
    env = {**os.environ, **cloud.env()}
    vertex = env.pop("HFGATE_VERTEX_ENDPOINT")
    tag = f"t{os.getpid()}"
    proc = subprocess.run([sys.executable, "-c", SDK, vertex, cloud.project_id, cloud.region,
                           cloud.outputs.staging_bucket_name, cloud.outputs.trainer_email, tag], cwd="/", env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])      # the SDK prints its own progress lines first
    assert out["resource"] == f"projects/{cloud.project_number}/locations/{cloud.region}"
    assert out["submitted_state"] in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    assert out["output_dir"] is True and out["get"] == [f"sdk-long-{tag}", tag]
    assert out["list_by_name"] == [f"sdk-long-{tag}"] and out["list_by_label"] == 1
    assert out["bad_filter"] == "InvalidArgument"
    assert out["after_cancel"] == "JOB_STATE_CANCELLED" and out["cancel_twice"] == "FailedPrecondition"
    assert out["run_ok"] == "JOB_STATE_SUCCEEDED" and out["run_failed"] == ["JOB_STATE_FAILED", True]
    assert out["bad_machine"] == "InvalidArgument" and out["missing"] == "NotFound"

"""Submit through the CLI against the local cloud: the request read back matches the pure builder, the bootstrap
hands the token to the trainer as the trainer identity, and the token is nowhere it should not be."""
from __future__ import annotations

import json
import time

import pytest
from google.cloud.aiplatform_v1 import types as ai

from jobs.jobspec import BOOTSTRAP_SOURCE, TrainRequest, build_custom_job
from jobs.token import HfToken
from tests.conftest import hfgate, set_token

GATED = "hfgate-demo/tiny-gated-lm"
DATASET = "hfgate-demo/tiny-chat"


def wait_done(cloud, job_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = cloud.jobs.jobs[job_id]
        if job.state in (ai.JobState.JOB_STATE_SUCCEEDED, ai.JobState.JOB_STATE_FAILED,
                         ai.JobState.JOB_STATE_CANCELLED):
            return job
        time.sleep(0.1)
    raise AssertionError("job did not finish")


@pytest.fixture
def alice(cloud):
    token = cloud.hub_tokens["alice-read"]
    version = set_token(cloud, token)
    return token, version


def test_submit_secret_ref_end_to_end(cloud, alice, tmp_path):
    token, version = alice
    before = len(cloud.jobs.jobs)
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "2", "--wait", "--json",
                  "-v", "--display-name", f"e2e-{int(time.time())}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["state"] == "JOB_STATE_SUCCEEDED" and result["token_version"] == version
    assert len(cloud.jobs.jobs) == before + 1
    job_id = result["job"].rsplit("/", 1)[-1]
    stored = cloud.jobs.jobs[job_id]
    # The stored request equals the pure builder's output.
    expected = build_custom_job(
        TrainRequest(model=GATED, dataset=DATASET, max_steps=2, display_name=stored.display_name),
        cloud.outputs, token_version=version, token_fingerprint=HfToken(token).fingerprint,
        model_commit=cloud.hub_state.repos[GATED].refs["main"])      # what the preflight resolved main to
    def request_part(job):
        return {k: v for k, v in json.loads(ai.CustomJob.to_json(job)).items()
                if k in ("displayName", "jobSpec", "labels")}
    assert request_part(ai.CustomJob.from_json(json.dumps(expected))) == request_part(stored)
    spec_text = ai.CustomJob.to_json(stored)
    assert token not in spec_text
    # HF_TOKEN is named only inside the bootstrap's source (which sets it in the trainer's environment).
    without_bootstrap = spec_text.replace(json.dumps(BOOTSTRAP_SOURCE)[1:-1], "")
    assert "HF_TOKEN" not in without_bootstrap and json.dumps(BOOTSTRAP_SOURCE)[1:-1] in spec_text
    # Inside the trainer: the token arrived in the environment (checked by fingerprint), never in argv.
    probe_path = cloud.jobs.mount(job_id, cloud.outputs.artifacts_bucket_name) / "runs" / stored.display_name / \
        "model" / "trainer-probe.json"
    probe = json.loads(probe_path.read_text())
    assert probe["token_sha256"] == HfToken(token).fingerprint
    assert token not in json.dumps(probe["argv"])
    # The secret was read as the trainer, and outputs reached the GCS emulator.
    assert ("access", cloud.trainer, version) in cloud.secrets.calls
    blobs = {b.name for b in cloud.gcs.client().list_blobs(cloud.outputs.artifacts_bucket_name)}
    assert f"runs/{stored.display_name}/model/model.safetensors" in blobs
    # Logs are retrievable, and nothing printed holds the token.
    logs = hfgate(cloud, "logs", job_id)
    assert "'loss': 1.234" in logs.stdout and "token read from" in logs.stdout
    for text in (proc.stdout, proc.stderr, logs.stdout, logs.stderr):
        assert token not in text


def test_resubmitting_the_same_request_creates_no_second_job(cloud, alice):
    args = ("submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "1", "--display-name", "dedupe")
    first = hfgate(cloud, *args, "--json")
    assert first.returncode == 0, first.stderr
    n = len(cloud.jobs.jobs)
    second = hfgate(cloud, *args, "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["created"] is False
    assert json.loads(second.stdout)["job"] == json.loads(first.stdout)["job"]
    assert len(cloud.jobs.jobs) == n


def test_blocked_user_creates_no_job_and_is_told_the_fix(cloud):
    set_token(cloud, cloud.hub_tokens["bob-read"])
    before = cloud.jobs.create_calls
    t0 = time.time()
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET)
    assert proc.returncode == 4
    assert "has not accepted the model's terms" in proc.stderr and f"{cloud.hub.url}/{GATED}" in proc.stderr
    assert cloud.jobs.create_calls == before
    assert time.time() - t0 < 30


def test_dry_run_prints_the_request_and_creates_nothing(cloud, alice):
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--dry-run", "--token-delivery", "env",
                  "--", "--learning_rate", "2e-5")
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)["custom_job"]
    args = body["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert args[-2:] == ["--learning_rate", "2e-5"]
    assert "anyone with aiplatform.customJobs.get" in proc.stderr
    assert alice[0] not in proc.stdout + proc.stderr
    assert cloud.jobs.create_calls == before


def test_bootstrap_fails_clearly_when_the_trainer_lacks_access(cloud, alice):
    grant = (cloud.trainer, "roles/secretmanager.secretAccessor", f"secret:{cloud.names.secret_id}")
    cloud.grants.triples.discard(grant)
    try:
        proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--wait", "--force-new",
                      "--display-name", "no-access")
    finally:
        cloud.grants.triples.add(grant)
    assert proc.returncode == 1
    assert "may not read" in proc.stderr and "secretAccessor" in proc.stderr


def test_trainer_crash_is_reported_failed_with_its_log_tail(cloud, alice):
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--wait", "--force-new",
                  "--display-name", "crash", extra_env={})
    assert proc.returncode == 0  # sanity: normal run succeeds
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--wait", "--force-new",
                  "--display-name", "crash", "--", "--probe_crash")
    assert proc.returncode == 1
    assert "non-zero status of 3" in proc.stderr and "simulated trainer crash" in proc.stderr


@pytest.mark.parametrize("args,words", [
    (("--machine-type", "g2-standard-7"), "unknown machine type"),
    (("--machine-type", "g2-standard-8", "--accelerator", "NVIDIA_TESLA_T4", "--accelerator-count", "1"),
     "comes with NVIDIA_L4"),
    (("--image", "example.com/unknown@sha256:" + "0" * 64), "--trl-version"),
])
def test_bad_submit_options_exit_2_and_create_nothing(cloud, alice, args, words):
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, *args)
    assert proc.returncode == 2 and words in proc.stderr
    assert cloud.jobs.create_calls == before


@pytest.mark.parametrize("case,code,words", [
    ("intruder", 4, "may not read"),
    ("missing-outputs", 2, "does not exist"),
])
def test_secret_errors(cloud, alice, tmp_path, case, code, words):
    if case == "intruder":
        proc = hfgate(cloud, "check", "--model", GATED,
                      as_member="serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com")
    else:
        proc = hfgate(cloud, "check", "--model", GATED, extra_env={"HFGATE_OUTPUTS": str(tmp_path / "nope.json")})
    assert proc.returncode == code, proc.stderr
    assert words in proc.stderr


def test_disabled_and_destroyed_versions(cloud, alice):
    from google.cloud.secretmanager_v1 import types as sm
    _, version = alice
    cloud.secrets.set_state(cloud.admin, version, sm.SecretVersion.State.DISABLED, "x")
    proc = hfgate(cloud, "check", "--model", GATED)
    assert proc.returncode == 5 and "is disabled" in proc.stderr and "token set" in proc.stderr
    cloud.secrets.set_state(cloud.admin, version, sm.SecretVersion.State.DESTROYED, "x")
    proc = hfgate(cloud, "check", "--model", GATED, "--token-version", version.rsplit("/", 1)[-1])
    assert proc.returncode == 5 and "is destroyed" in proc.stderr

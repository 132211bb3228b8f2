"""Two teams on the local cloud (config/local-teams.toml), attacked from inside one of them through the real
services' protocols: team alpha's submitter and alpha's jobs try to read beta's token, run as beta's trainer, and
plant files in beta's buckets. Every attempt is refused with the error the real service gives, and nothing of
beta's changes. (Downloading beta's repositories through the proxy is the review's per-team replay:
tests/test_teams.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.test_submit import wait_done


@pytest.fixture(scope="module")
def teams(synth_dir):
    from localcloud import LocalCloud
    from review.plan import synthesized
    with LocalCloud(plan=synthesized(synth_dir, "local-teams"), env="local-teams") as c:
        c.jobs.path_prefix = [str(ROOT / "tests" / "bin")]
        versions = {team: _store_token(c, team, c.hub_tokens["alice-read"]) for team in ("alpha", "beta")}
        yield c, versions


def _run(cloud, code: str, *args, as_member: str, team: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, **cloud.env(as_member=as_member, team=team)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def _cli(cloud, *args, as_member: str, team: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **cloud.env(as_member=as_member, team=team)}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def _store_token(cloud, team: str, value: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "token", "set", "--json"], cwd=ROOT, input=value,
                          env={**os.environ, **cloud.env(as_member=cloud.admin, team=team)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["version"]


def _submitter(cloud, team):
    return f"serviceAccount:{cloud.team_outputs[team].submitter_email}"


CREATE = """
import json, sys
from google.cloud.aiplatform_v1 import types
from jobs import endpoints
parent, region = sys.argv[1], sys.argv[2]
client = endpoints.vertex(region)
try:
    job = client.create_custom_job(parent=parent, custom_job=types.CustomJob.from_json(sys.stdin.read()))
    print(json.dumps({"job": job.name}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def _create(cloud, body: dict, team: str) -> dict:
    o = cloud.team_outputs[team]
    proc = _run(cloud, CREATE, f"projects/{o.project_id}/locations/{o.region}", o.region,
                as_member=_submitter(cloud, team), team=team, stdin=json.dumps(body))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _wait(cloud, name: str):
    return wait_done(cloud, name.rsplit("/", 1)[-1])


def _alpha_job(cloud, versions, **overrides) -> dict:
    from jobs.jobspec import TrainRequest, build_custom_job
    body = build_custom_job(TrainRequest(model="hfgate-demo/tiny-gated-lm", dataset="hfgate-demo/tiny-chat",
                                         display_name=f"alpha-{time.time_ns()}", checkpoint_every=0),
                            cloud.team_outputs["alpha"], token_version=versions["alpha"], token_fingerprint="x")
    pool = body["job_spec"]["worker_pool_specs"][0]
    for key, value in overrides.items():
        if key == "env":
            pool["container_spec"]["env"] = [e for e in pool["container_spec"]["env"] if e["name"] not in value] + \
                [{"name": k, "value": v} for k, v in value.items()]
        elif key == "service_account":
            body["job_spec"]["service_account"] = value
        else:
            pool["container_spec"][key] = value
    return body


def test_each_team_reads_its_own_token_only(teams):
    cloud, _ = teams
    ok = _cli(cloud, "check", "--model", "hfgate-demo/tiny-gated-lm", as_member=_submitter(cloud, "alpha"),
              team="alpha")
    assert ok.returncode == 0, ok.stderr
    # alpha's submitter with beta's contract: Secret Manager refuses, the CLI says who and what (exit 4).
    proc = _cli(cloud, "check", "--model", "hfgate-demo/tiny-open-lm", as_member=_submitter(cloud, "alpha"),
                team="beta")
    assert proc.returncode == 4, proc.stderr
    assert "hfg-lt-alpha-submitter" in proc.stderr and "hfg-lt-beta-hf-token" in proc.stderr
    beta_secret = cloud.team_outputs["beta"].token_secret.rsplit("/", 1)[-1]
    refused = [c for c in cloud.secrets.calls if c[0] == "access" and f"/secrets/{beta_secret}/" in c[2]
               and c[1] == _submitter(cloud, "alpha")]
    assert refused       # it asked, and was told no (the store records the attempt)
    # A team's people act as their own submitter only (IAM Credentials refuses the other).
    mint = "iam.serviceAccounts.getAccessToken"
    assert cloud.iam.allows("user:ana@example.com", mint, _submitter(cloud, "alpha"))
    assert not cloud.iam.allows("user:ana@example.com", mint, _submitter(cloud, "beta"))


def test_a_team_cannot_run_a_job_as_the_other_teams_trainer(teams):
    cloud, versions = teams
    body = _alpha_job(cloud, versions, service_account=cloud.team_outputs["beta"].trainer_email)
    before = len(cloud.jobs.jobs)
    out = _create(cloud, body, "alpha")
    assert out.get("error") == "PermissionDenied" and "iam.serviceAccounts.actAs" in out["message"], out
    assert len(cloud.jobs.jobs) == before


def test_a_teams_job_cannot_read_the_other_teams_token(teams):
    cloud, versions = teams
    body = _alpha_job(cloud, versions, env={"HFGATE_TOKEN_SECRET_VERSION": versions["beta"]})
    out = _create(cloud, body, "alpha")
    assert "job" in out, out
    job = _wait(cloud, out["job"])
    assert job.state.name == "JOB_STATE_FAILED"
    lines = [line for _, line in cloud.jobs.logs[out["job"].rsplit("/", 1)[-1]]]
    assert any("hfg-lt-beta-hf-token" in line and ("403" in line or "PERMISSION_DENIED" in line or
                                                    "denied" in line.lower()) for line in lines), lines[-5:]


def test_a_teams_job_cannot_plant_files_in_the_other_teams_buckets(teams):
    """A checkpoint planted in a beta run: alpha's trainer cannot even mount beta's artifacts bucket (Cloud
    Storage: storage.objects.list denied); the job fails and beta's bucket is unchanged."""
    cloud, versions = teams
    beta = cloud.team_outputs["beta"].artifacts_bucket_name
    target = f"/gcs/{beta}/runs/victim/model/checkpoint-9/model.safetensors"
    code = f"import os; os.makedirs(os.path.dirname({target!r}), exist_ok=True); open({target!r}, 'wb').write(b'x')"
    body = _alpha_job(cloud, versions, command=["python3", "-c", code], args=[])
    before = sorted(b.name for b in cloud.gcs.client().list_blobs(beta))
    out = _create(cloud, body, "alpha")
    job = _wait(cloud, out["job"])
    assert job.state.name == "JOB_STATE_FAILED"
    assert "storage.objects.list" in job.error.message and beta in job.error.message
    assert sorted(b.name for b in cloud.gcs.client().list_blobs(beta)) == before


def test_within_a_team_the_trainer_cannot_write_the_mirror_it_trains_from(teams):
    """The same rule inside a team: the trainer reads the mirror bucket and may not write it (Cloud Storage:
    storage.objects.create denied); nothing lands."""
    cloud, versions = teams
    mirror = cloud.team_outputs["alpha"].mirror_bucket_name
    target = f"/gcs/{mirror}/models/hfgate-demo/tiny-gated-lm/{'0' * 40}/model.safetensors"
    code = f"import os; os.makedirs(os.path.dirname({target!r}), exist_ok=True); open({target!r}, 'wb').write(b'x')"
    body = _alpha_job(cloud, versions, command=["python3", "-c", code], args=[])
    out = _create(cloud, body, "alpha")
    job = _wait(cloud, out["job"])
    assert job.state.name == "JOB_STATE_FAILED"
    assert "storage.objects.create" in job.error.message
    assert not [b.name for b in cloud.gcs.client().list_blobs(mirror)]


def test_make_demo_teams_runs_as_documented(synth_dir):
    """`make demo-teams`' program, as it is: every refusal happens and the review of the two-team platform passes."""
    proc = subprocess.run([sys.executable, "-m", "localcloud.demo_teams"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CDKTF_OUTDIR": str(synth_dir)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "may not read team beta's token" in out and "(exit 4)" in out
    assert "storage.objects.list" in out and "beta's bucket unchanged: True" in out
    assert "project hfgate-lt-alpha" in out and "project hfgate-lt-beta" in out      # two teams, two projects
    for what in ("read gs://", "list jobs in hfgate-lt-beta", "read logs of hfgate-lt-beta: 403"):
        assert any(what in line and ("refused" in line or "403" in line) for line in out.splitlines()), what
    assert "cross-team paths: 0" in out and "demo-teams complete" in out

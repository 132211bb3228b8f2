"""`hfgate publish` and `hfgate token set --kind write` against the local cloud, run as a user runs them: the CLI in
a subprocess, as the submitter (a publisher in config/local.toml), impersonating the publisher account through IAM
Credentials to read the write token. The bad cases exit with their documented codes and upload nothing; the read
token's secret is never accessed by publish."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, hfgate, set_token

GATED = "hfgate-demo/tiny-gated-lm"
DATASET = "hfgate-demo/tiny-chat"


def write_versions(cloud) -> int:
    sid = cloud.outputs.write_token_secret.rsplit("/", 1)[-1]
    return len(cloud.secrets.secrets[sid].versions)


def reads_of(cloud, secret: str) -> list:
    return [c for c in cloud.secrets.calls if c[0] == "access" and c[2].startswith(secret + "/")]


def set_write(cloud, name: str, *args):
    """`hfgate token set --kind write` as the platform admin, the token on stdin (as a user pipes it)."""
    env = {**os.environ, **cloud.env(as_member=cloud.admin)}
    return subprocess.run([sys.executable, "-m", "jobs.cli", "token", "set", "--kind", "write", *args], cwd=ROOT,
                          env=env, input=cloud.hub_tokens[name] + "\n", capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def run(cloud):
    """One finished run (the trl probe writes config.json and model.safetensors), and its name."""
    set_token(cloud, cloud.hub_tokens["alice-read"])
    name = f"pub-{time.time_ns()}"
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "1", "--wait",
                  "--display-name", name, "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    return name, json.loads(proc.stdout)["job"]


def test_publish_end_to_end_private_one_commit_nothing_new_the_second_time(cloud, run):
    name, job = run
    repo = f"acme/tiny-sft-{time.time_ns()}"
    hub = cloud.hub_state
    # No write token stored yet: exit 5 and the fix; nothing created on the Hub.
    if write_versions(cloud) == 0:
        proc = hfgate(cloud, "publish", name, "--repo", repo)
        assert proc.returncode == 5, proc.stderr
        assert "hfgate token set --kind write" in proc.stderr and repo not in hub.repos
    # A read token is refused as the write token (exit 4, the fix), and nothing is stored.
    before = write_versions(cloud)
    proc = set_write(cloud, "alice-read", "--repo", repo)
    assert proc.returncode == 4, proc.stderr
    assert "read token cannot publish" in proc.stderr and "fine-grained" in proc.stderr
    assert write_versions(cloud) == before
    # The fine-grained token with write on acme: stored.
    proc = set_write(cloud, "alice-fg-write-acme", "--repo", repo, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["role"] == "fineGrained" and write_versions(cloud) == before + 1

    read_secret = cloud.outputs.token_secret
    reads_before = len(reads_of(cloud, read_secret))
    impersonations = len(cloud.impersonations)
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["private"] is True and out["created_repo"] is True and out["uploaded"] == out["files"] == 4
    assert out["base_model"] == GATED and out["license"] == "apache-2.0"
    repo_state = hub.repos[repo]
    assert repo_state.private and len(repo_state.history) == 1
    files = repo_state.commits[repo_state.refs["main"]]
    assert set(files) == {".gitattributes", "README.md", "config.json", "model.safetensors", "trainer-probe.json"}
    card = files["README.md"].decode()
    for fact in (f"base_model: {GATED}", "license: apache-2.0", f"- {DATASET}", name, job, "gated"):
        assert fact in card, fact
    stored = cloud.gcs.client().bucket(cloud.outputs.artifacts_bucket_name).blob(f"runs/{name}/model/model.safetensors")
    assert files["model.safetensors"] == stored.download_as_bytes()
    # Publish read the write token as the publisher, never the read token.
    assert len(reads_of(cloud, read_secret)) == reads_before
    writes = reads_of(cloud, cloud.outputs.write_token_secret)
    assert writes and writes[-1][1] == f"serviceAccount:{cloud.outputs.publisher_email}"
    assert cloud.impersonations[impersonations:] == [(cloud.submitter, cloud.outputs.publisher_email)]

    # The same run again: no new commit, nothing uploaded.
    puts = len([r for r in hub.log if r["method"] == "PUT"])
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["uploaded"] == 0 and len(repo_state.history) == 1
    assert len([r for r in hub.log if r["method"] == "PUT"]) == puts


def test_bad_publishes_exit_with_their_codes_and_upload_nothing(cloud, run):
    name, _ = run
    if write_versions(cloud) == 0:
        assert set_write(cloud, "alice-fg-write-acme").returncode == 0
    hub = cloud.hub_state
    commits = sum(len(r.history) for r in hub.repos.values())

    # An organization the token may not write to: exit 4 before any upload.
    other = f"hfgate-demo/sft-{time.time_ns()}"
    proc = hfgate(cloud, "publish", name, "--repo", other)
    assert proc.returncode == 4, proc.stderr
    assert "not a member of the organization hfgate-demo" in proc.stderr and other not in hub.repos
    # Someone who is not a publisher cannot act as the publisher: exit 4, names the config field.
    intruder = "serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com"
    proc = hfgate(cloud, "publish", name, "--repo", f"acme/x-{time.time_ns()}", as_member=intruder)
    assert proc.returncode == 4 and "publishers" in proc.stderr, proc.stderr
    # The trainer (what every job runs as) cannot read the write token at all.
    from localcloud.secretmanager import RpcError
    with pytest.raises(RpcError, match="Permission"):
        cloud.secrets.access(cloud.trainer, cloud.outputs.write_token_secret + "/versions/latest")
    # A public derivative of a gated model needs --confirm-base-terms (exit 2, names the terms page).
    repo = f"acme/pub-{time.time_ns()}"
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--public")
    assert proc.returncode == 2 and "--confirm-base-terms" in proc.stderr and GATED in proc.stderr, proc.stderr
    assert repo not in hub.repos
    # A job still running: exit 2.
    running = f"pub-running-{time.time_ns()}"
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--display-name", running, "--json",
                  "--", "--probe_sleep", "30")
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)["job"]
    try:
        proc = hfgate(cloud, "publish", running, "--repo", f"acme/r-{time.time_ns()}")
        assert proc.returncode == 2 and "SUCCEEDED" in proc.stderr, proc.stderr
    finally:
        hfgate(cloud, "cancel", job)
    # A file planted in the run's folder after its job ended: exit 2, named.
    bucket = cloud.gcs.client().bucket(cloud.outputs.artifacts_bucket_name)
    bucket.blob(f"runs/{name}/model/planted.safetensors").upload_from_string(b"x" * 2048)
    try:
        proc = hfgate(cloud, "publish", name, "--repo", f"acme/p-{time.time_ns()}")
        assert proc.returncode == 2 and "planted.safetensors" in proc.stderr, proc.stderr
    finally:
        bucket.blob(f"runs/{name}/model/planted.safetensors").delete()
    # A repository id that is not one: exit 2.
    assert hfgate(cloud, "publish", name, "--repo", "not a repo").returncode == 2
    assert sum(len(r.history) for r in hub.repos.values()) == commits


def test_a_broad_write_token_is_stored_with_a_warning(cloud):
    proc = set_write(cloud, "alice-write")
    assert proc.returncode == 0, proc.stderr
    assert "every repository" in proc.stderr
    proc = set_write(cloud, "alice-fg-write-acme")      # leave the least-privilege one current
    assert proc.returncode == 0, proc.stderr

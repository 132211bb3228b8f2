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


# Races, stale files, ids the Hub refuses, visibility, repository-scoped tokens, the resume cache ---------------------

def publishing(cloud, *args, extra_env=None):
    """`hfgate publish ... --json` started now (not waited for), as the submitter."""
    env = {**os.environ, **cloud.env(), **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "jobs.cli", "publish", *args, "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ensure_write_token(cloud, name="alice-fg-write-acme"):
    assert set_write(cloud, name).returncode == 0


def one_commit_of_the_run(cloud, repo: str, outs: list[dict]) -> None:
    """The repository took exactly one commit, every publish reports it, exactly one says it uploaded the run."""
    history = cloud.hub_state.repos[repo].history
    assert len(history) == 1, history
    assert {o["commit"] for o in outs} == {history[0]["sha"]}
    assert sorted(o["uploaded"] > 0 for o in outs) == [False] * (len(outs) - 1) + [True], outs


def test_concurrent_publishes_of_one_run_make_exactly_one_commit(cloud, run):
    """CI retries and double clicks: several `hfgate publish` of one run to one repository at once. The Hub takes
    one commit (parent_commit: a stale parent is refused with 412); the others find the run there and exit 0. Once
    as they come, and twice with the commit route slowed so that every publisher has read the old head before the
    first commit lands (the 412 path, every time)."""
    name, _ = run
    ensure_write_token(cloud)
    hub = cloud.hub_state
    for slow in (0.0, 3.0, 3.0):
        repo = f"acme/race-{time.time_ns()}"
        if slow:
            hub.set_fault(f"/api/models/{repo}/commit/", latency_s=slow)
        try:
            procs = [publishing(cloud, name, "--repo", repo) for _ in range(3)]
            results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        finally:
            hub.clear_faults()
        for rc, out, err in results:
            assert rc == 0, err
        outs = [json.loads(out) for _, out, _ in results]
        one_commit_of_the_run(cloud, repo, outs)
        if slow:
            assert any(o["by_another"] for o in outs), outs


def test_concurrent_publishes_in_threads_at_a_barrier(cloud, run, monkeypatch):
    """The same race in one process: threads released together by a barrier, each a whole api.publish."""
    import threading

    from huggingface_hub import constants

    from jobs import api
    name, _ = run
    # What the local cloud's environment sets for a process (HF_HUB_DISABLE_XET), which this one read at import.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    ensure_write_token(cloud)
    for _ in range(2):
        repo = f"acme/race-threads-{time.time_ns()}"
        barrier, results, errors = threading.Barrier(3), [], []

        def one():
            barrier.wait()
            try:
                results.append(api.publish(cloud.outputs, name, repo))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        with cloud.environ(as_member=cloud.submitter):
            threads = [threading.Thread(target=one) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
        assert not errors, errors
        one_commit_of_the_run(cloud, repo, [{"commit": r.commit, "uploaded": r.uploaded} for r in results])


def test_files_of_an_earlier_version_are_refused_and_replace_deletes_them_in_the_same_commit(cloud, run):
    """A full fine-tune published over a LoRA adapter: the adapter's files would stay and from_pretrained would load
    them. Publish names them and uploads nothing (exit 2); --replace deletes them in the run's commit, after which
    the repository lists exactly the run's files and card."""
    name, _ = run
    ensure_write_token(cloud)
    hub = cloud.hub_state
    repo = f"acme/lora-then-full-{time.time_ns()}"
    hub.add_repo(repo, {"adapter_config.json": b'{"peft_type": "LORA"}', "README.md": b"old card\n",
                        "adapter_model.safetensors": b"\0" * 4096}, private=True, members={"acme"})
    proc = hfgate(cloud, "publish", name, "--repo", repo, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "adapter_config.json" in proc.stderr and "adapter_model.safetensors" in proc.stderr, proc.stderr
    assert "--replace" in proc.stderr and hub.repos[repo].history == []
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--replace", "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["deleted"]) == ["adapter_config.json", "adapter_model.safetensors"]
    state = hub.repos[repo]
    assert len(state.history) == 1
    assert set(state.commits[state.refs["main"]]) == {"README.md", "config.json", "model.safetensors",
                                                      "trainer-probe.json"}


@pytest.mark.parametrize("repo", ["acme/model.git", "acme/model.", "acme/model-", "acme/model\n", "acme/a--b",
                                  "acme/a..b", "-acme/model", "acme/.model", "acme/model/extra", "acme"])
def test_repository_ids_the_hub_refuses_are_usage_errors_before_any_credential(cloud, run, repo):
    """Exit 2 (UsageError) before the publisher is impersonated or any token read: what huggingface_hub's
    validate_repo_id refuses (a `.git` suffix, a name ending in '.' or '-', '--' or '..') and a trailing newline,
    which a `$`-anchored pattern lets through."""
    from jobs import api
    from jobs.errors import UsageError
    name, _ = run
    impersonations, reads = len(cloud.impersonations), len(cloud.secrets.calls)
    with cloud.environ(as_member=cloud.submitter), pytest.raises(UsageError) as err:
        api.publish(cloud.outputs, name, repo)
    assert err.value.exit_code == 2 and "ORG/NAME" in err.value.fix
    assert len(cloud.impersonations) == impersonations
    assert [c for c in cloud.secrets.calls[reads:] if c[0] == "access"] == []
    assert repo not in cloud.hub_state.repos


def test_trailing_newline_repo_id_from_the_command_line_is_exit_2(cloud, run):
    name, _ = run
    impersonations = len(cloud.impersonations)
    proc = hfgate(cloud, "publish", name, "--repo", "acme/model\n")
    assert proc.returncode == 2 and "not a repository id" in proc.stderr, proc.stderr
    assert len(cloud.impersonations) == impersonations


def test_public_on_an_existing_private_repository_is_refused_and_the_visibility_is_the_hubs(cloud, run):
    name, _ = run
    ensure_write_token(cloud)
    hub = cloud.hub_state
    repo = f"acme/kept-private-{time.time_ns()}"
    hub.add_repo(repo, {}, private=True, members={"acme"})
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--public", "--confirm-base-terms", timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "is private" in proc.stderr and "settings" in proc.stderr and hub.repos[repo].history == []
    proc = hfgate(cloud, "publish", name, "--repo", repo, "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["private"] is True and hub.repos[repo].private


def test_a_token_scoped_to_one_repository_publishes_to_it_and_creates_nothing(cloud, run):
    """A fine-grained token with read and write on one model repository (the Hub's token page: "specific
    resources, such as a specific model"): it reads and writes that existing repository, and creates none. `token
    set --kind write --repo` agrees with the Hub: the missing repository is refused (exit 4) with what to do, and
    publish creates nothing."""
    name, _ = run
    hub = cloud.hub_state
    repo, missing = f"acme/scoped-{time.time_ns()}", f"acme/scoped-missing-{time.time_ns()}"
    hub.add_repo(repo, {}, private=True, members={"acme"})
    for target, label in ((repo, "fg-one-existing"), (missing, "fg-one-missing")):
        token = hub.add_token("alice", "fineGrained", label, scoped=[
            {"entity": {"type": "model", "name": target}, "permissions": ["repo.content.read", "repo.write"]}])
        cloud.hub_tokens[label] = token.value
    try:
        proc = set_write(cloud, "fg-one-existing", "--repo", repo)
        assert proc.returncode == 0, proc.stderr
        proc = hfgate(cloud, "publish", name, "--repo", repo, "--json", timeout=180)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["private"] is True and len(hub.repos[repo].history) == 1

        proc = set_write(cloud, "fg-one-missing", "--repo", missing)
        assert proc.returncode == 4, proc.stderr
        assert "cannot create" in proc.stderr and f"create {missing}" in proc.stderr
        assert set_write(cloud, "fg-one-missing").returncode == 0       # stored without a target to check
        proc = hfgate(cloud, "publish", name, "--repo", missing, timeout=180)
        assert proc.returncode == 4, proc.stderr
        assert "cannot create" in proc.stderr and missing not in hub.repos
    finally:
        ensure_write_token(cloud)


def forge_crc32c(data: bytes, crc: int, at: int) -> bytes:
    """`data` with the 4 bytes at `at` changed so that its CRC32C is `crc`: CRC is affine over GF(2), so 32 bits
    anywhere can be solved for (what makes CRC32C no proof of content)."""
    import google_crc32c
    base = bytearray(data)
    base[at:at + 4] = b"\0\0\0\0"
    c0 = google_crc32c.value(bytes(base))
    basis: list[tuple[int, int]] = []          # (effect on the CRC, which bits), distinct top bits, descending
    for bit in range(32):
        t = bytearray(base)
        t[at + bit // 8] ^= 1 << (bit % 8)
        v, m = google_crc32c.value(bytes(t)) ^ c0, 1 << bit
        for bv, bm in basis:
            if v ^ bv < v:
                v, m = v ^ bv, m ^ bm
        if v:
            basis = sorted([*basis, (v, m)], reverse=True)
    r, x = crc ^ c0, 0
    for bv, bm in basis:
        if r ^ bv < r:
            r, x = r ^ bv, x ^ bm
    assert r == 0
    for bit in range(32):
        if x >> bit & 1:
            base[at + bit // 8] ^= 1 << (bit % 8)
    return bytes(base)


def test_the_resume_cache_is_checked_by_sha256_against_the_bucket_not_by_crc32c(cloud, run, tmp_path):
    """A cached file with other bytes but the bucket object's size and CRC32C is not trusted: its SHA-256 is compared
    with the bucket object's, it is downloaded again, and the Hub ends up with the bucket's bytes (the verification
    after the commit compares the Hub with the bucket, not with the cache)."""
    import google_crc32c
    name, job = run
    ensure_write_token(cloud)
    env = {"HFGATE_CACHE_DIR": str(tmp_path)}
    proc = hfgate(cloud, "publish", name, "--repo", f"acme/cache-a-{time.time_ns()}", extra_env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    cached = tmp_path / "publish" / job.rsplit("/", 1)[-1] / "run" / "model.safetensors"
    good = cached.read_bytes()
    bad = bytearray(good)
    bad[-64:-4] = b"\xff" * 60
    bad = bytearray(forge_crc32c(bytes(bad), google_crc32c.value(good), len(bad) - 4))
    assert bytes(bad) != good and google_crc32c.value(bytes(bad)) == google_crc32c.value(good)
    cached.write_bytes(bytes(bad))
    repo = f"acme/cache-b-{time.time_ns()}"
    proc = hfgate(cloud, "publish", name, "--repo", repo, extra_env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "differs from the bucket" in proc.stderr
    state = cloud.hub_state.repos[repo]
    assert state.commits[state.refs["main"]]["model.safetensors"] == good
    assert cached.read_bytes() == good


def test_token_status_shows_the_read_and_the_write_token(cloud):
    """`hfgate token status` (the platform admin's command) covers both tokens (--json: the write token under
    "write"): the write token's versions, and where to see whose it is. Only the publisher reads the write token, so
    a publisher sees whose it is and where it writes with --kind write (read as the publisher, as publish does).
    The token itself is never shown."""
    ensure_write_token(cloud)
    reads = len(reads_of(cloud, cloud.outputs.write_token_secret))
    proc = hfgate(cloud, "token", "status", "--json", as_member=cloud.admin)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["secret"] == cloud.outputs.token_secret and "versions" in info
    write = info["write"]
    assert write["secret"] == cloud.outputs.write_token_secret and write["versions"][0]["latest"]
    assert write["owner"] is None and any("--kind write" in p for p in write["problems"]), write
    assert len(reads_of(cloud, cloud.outputs.write_token_secret)) == reads      # the admin did not read it
    proc = hfgate(cloud, "token", "status", as_member=cloud.admin)
    assert proc.returncode == 0, proc.stderr
    assert f"{cloud.outputs.write_token_secret} (write token: hfgate publish)" in proc.stdout

    proc = hfgate(cloud, "token", "status", "--kind", "write", "--json")          # the submitter: a publisher
    assert proc.returncode == 0, proc.stderr
    write = json.loads(proc.stdout)["write"]
    assert (write["owner"], write["role"]) == ("alice", "fineGrained") and "acme" in write["scope"], write
    writes = reads_of(cloud, cloud.outputs.write_token_secret)[reads:]
    assert writes and {c[1] for c in writes} == {f"serviceAccount:{cloud.outputs.publisher_email}"}
    proc = hfgate(cloud, "token", "status", "--kind", "write")
    assert proc.returncode == 0 and "alice (fineGrained token" in proc.stdout, proc.stderr
    assert cloud.hub_tokens["alice-fg-write-acme"] not in proc.stdout + proc.stderr

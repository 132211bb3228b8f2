"""Token lifecycle, the one-time mirror, and Hugging Face Jobs as a backend, through the CLI on the local cloud."""
from __future__ import annotations

import json
import time

import pytest
from google.cloud.secretmanager_v1 import types as sm

from jobs.token import HfToken
from tests.conftest import hfgate, set_token
from tests.test_submit import DATASET, GATED, wait_done

ENABLED = sm.SecretVersion.State.ENABLED


def versions(cloud):
    return cloud.secrets.secrets[cloud.names.secret_id].versions


def enabled(cloud):
    return [v.number for v in versions(cloud) if v.state == ENABLED]


def token_set(cloud, stdin: str, *args, as_member=None):
    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    env = {**os.environ, **cloud.env(as_member=as_member or cloud.admin)}
    return subprocess.run([sys.executable, "-m", "jobs.cli", "token", *args], input=stdin, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


BAD_TOKENS = [
    ("empty", lambda c: "", 3, "empty"),
    ("whitespace", lambda c: "   \n", 3, "whitespace"),
    ("quoted", lambda c: f'"{c.hub_tokens["alice-read"]}"', 3, "quote"),
    ("placeholder", lambda c: "$HF_TOKEN", 3, "placeholder"),
    ("braced placeholder", lambda c: "${HF_TOKEN}", 3, "placeholder"),
    ("bearer", lambda c: f"Bearer {c.hub_tokens['alice-read']}", 3, "Bearer"),
    ("not hf_", lambda c: "ghp_" + "x" * 36, 3, "hf_"),
    ("revoked", lambda c: c.hub_tokens["alice-revoked"], 3, "rejects this token"),
]


@pytest.mark.parametrize("case,make,code,words", BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
def test_token_set_rejects_bad_tokens_and_adds_nothing(cloud, case, make, code, words):
    before = len(versions(cloud))
    proc = token_set(cloud, make(cloud), "set")
    assert proc.returncode == code, proc.stderr
    assert words.lower() in proc.stderr.lower() and "fix:" in proc.stderr
    assert "nothing was stored" in proc.stderr
    assert len(versions(cloud)) == before


def test_token_set_with_model_refuses_a_user_who_never_accepted_the_terms(cloud):
    before = len(versions(cloud))
    proc = token_set(cloud, cloud.hub_tokens["bob-read"], "set", "--model", GATED)
    assert proc.returncode == 4 and "accept the terms" in proc.stderr
    assert len(versions(cloud)) == before


def test_token_is_never_taken_from_argv(cloud):
    before = len(versions(cloud))
    proc = token_set(cloud, "", "set", cloud.hub_tokens["alice-read"])
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr
    assert cloud.hub_tokens["alice-read"] not in proc.stderr.replace("unrecognized arguments: " +
                                                                      cloud.hub_tokens["alice-read"], "")
    assert len(versions(cloud)) == before


def test_good_token_leaves_exactly_one_enabled_version(cloud):
    set_token(cloud, cloud.hub_tokens["bob-read"])          # a previous version to be disabled
    proc = token_set(cloud, cloud.hub_tokens["alice-read"] + "\n", "set", "--model", GATED, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["user"] == "alice" and out["role"] == "read"
    assert out["fingerprint"] == HfToken(cloud.hub_tokens["alice-read"]).fingerprint
    assert enabled(cloud) == [int(out["version"].rsplit("/", 1)[-1])]
    assert out["disabled"]                                   # disabled, not destroyed
    states = {v.number: v.state for v in versions(cloud)}
    assert sm.SecretVersion.State.DISABLED in states.values()
    assert cloud.hub_tokens["alice-read"] not in proc.stdout + proc.stderr
    # The stored bytes are the token without the newline stdin carried.
    assert versions(cloud)[-1].data == cloud.hub_tokens["alice-read"].encode()


def test_token_set_from_the_local_hugging_face_login(cloud, tmp_path):
    (tmp_path / "token").write_text(cloud.hub_tokens["alice-fg-gated"])
    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    env = {**os.environ, **cloud.env(as_member=cloud.admin), "HF_HOME": str(tmp_path), "HF_TOKEN": ""}
    env.pop("HF_TOKEN")
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "token", "set", "--from-hf-login", "--json"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["role"] == "fineGrained"


def test_status_shows_owner_versions_and_the_jobs_that_used_each(cloud):
    version = set_token(cloud, cloud.hub_tokens["alice-read"])
    sub = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--json", "--force-new", "--wait")
    assert sub.returncode == 0, sub.stderr
    job = json.loads(sub.stdout)["job"]
    proc = hfgate(cloud, "token", "status", "--json", as_member=cloud.admin)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["owner"] == "alice" and info["role"] == "read"
    assert info["latest"].endswith(version.rsplit("/", 1)[-1])
    current = next(v for v in info["versions"] if v["latest"])
    assert current["state"] == "ENABLED" and job in [j["job"] for j in current["jobs"]]
    assert info["rotation_period_days"] == 90 and info["rotation_due"]
    text = hfgate(cloud, "token", "status", as_member=cloud.admin)
    assert "alice" in text.stdout and "latest" in text.stdout
    assert cloud.hub_tokens["alice-read"] not in proc.stdout + text.stdout


def test_rotate_keeps_a_version_a_running_job_uses_unless_forced(cloud):
    old = set_token(cloud, cloud.hub_tokens["alice-read"])
    sub = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--json", "--force-new",
                 "--", "--probe_sleep", "20")
    assert sub.returncode == 0, sub.stderr
    job_id = json.loads(sub.stdout)["job"].rsplit("/", 1)[-1]
    try:
        deadline = time.time() + 20
        while cloud.jobs.jobs[job_id].state.name != "JOB_STATE_RUNNING" and time.time() < deadline:
            time.sleep(0.1)
        proc = token_set(cloud, cloud.hub_tokens["alice-fg-gated"], "rotate", "--json")
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert old in out["kept_for_running_jobs"] and old not in out["disabled"]
        assert int(old.rsplit("/", 1)[-1]) in enabled(cloud)
        forced = token_set(cloud, cloud.hub_tokens["alice-read"], "rotate", "--force", "--json")
        assert forced.returncode == 0 and old in json.loads(forced.stdout)["disabled"]
        assert len(enabled(cloud)) == 1
    finally:
        hfgate(cloud, "cancel", job_id)
        wait_done(cloud, job_id)


# mirror ------------------------------------------------------------------------------------------------------------
def test_mirror_uploads_once_with_a_verified_manifest(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    # A commit of its own, so that mirrors made by other tests of the session do not count.
    cloud.hub_state.add_repo(GATED, {"mirror-test.txt": f"{time.time()}".encode()})
    first = hfgate(cloud, "mirror", "--model", GATED, "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["uploaded"] == out["files"] > 0 and "uploaded model.safetensors" in first.stderr
    manifest = json.loads(cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name)
                          .blob(f"models/{GATED}/{out['commit']}/hfgate-manifest.json").download_as_bytes())
    assert manifest["commit"] == out["commit"] and manifest["gated"] == "auto"
    assert manifest["license"] == "apache-2.0"
    assert {f["path"] for f in manifest["files"]} >= {"model.safetensors", "config.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    again = hfgate(cloud, "mirror", "--model", GATED, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["uploaded"] == 0
    assert "already mirrored" in again.stderr


def test_mirror_refuses_pickle_only_repos_unless_allowed(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = hfgate(cloud, "mirror", "--model", "hfgate-demo/pickle-only-lm")
    assert proc.returncode == 2 and "--allow-pickle" in proc.stderr
    ok = hfgate(cloud, "mirror", "--model", "hfgate-demo/pickle-only-lm", "--allow-pickle", "--json")
    assert ok.returncode == 0, ok.stderr


def test_mirror_submit_refuses_without_a_mirror(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", "hfgate-demo/tiny-open-lm", "--dataset", DATASET,
                  "--token-delivery", "mirror")
    assert proc.returncode == 5 and "hfgate mirror --model hfgate-demo/tiny-open-lm" in proc.stderr
    assert cloud.jobs.create_calls == before


def test_mirror_submit_runs_with_no_token_and_no_hub_request(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    for args in (["--model", GATED], ["--dataset", DATASET]):
        assert hfgate(cloud, "mirror", *args).returncode == 0
    calls = len(cloud.hub_state.log)
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--token-delivery", "mirror", "--wait",
                  "--json", "--force-new")
    assert proc.returncode == 0, proc.stderr
    # The CLI asked the Hub which commits `main` names (to pick the mirror folders) and what those commits' files
    # are (to prove the mirrors against the Hub's hashes); the job spoke to nobody.
    model_sha, data_sha = cloud.hub_state.repos[GATED].refs["main"], cloud.hub_state.repos[DATASET].refs["main"]
    assert sorted(r["path"] for r in cloud.hub_state.log[calls:]) == sorted(
        [f"/api/models/{GATED}/revision/main", f"/api/datasets/{DATASET}/revision/main",
         f"/api/models/{GATED}/tree/{model_sha}", f"/api/datasets/{DATASET}/tree/{data_sha}"])
    # With the commit pinned in the request, no resolution (the dataset is still resolved); the proof stays.
    pinned = cloud.hub_state.repos[GATED].refs["main"]
    calls = len(cloud.hub_state.log)
    dry = hfgate(cloud, "submit", "--model", GATED, "--revision", pinned, "--dataset", DATASET,
                 "--token-delivery", "mirror", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert sorted(r["path"] for r in cloud.hub_state.log[calls:]) == sorted(
        [f"/api/datasets/{DATASET}/revision/main", f"/api/models/{GATED}/tree/{model_sha}",
         f"/api/datasets/{DATASET}/tree/{data_sha}"])
    job = cloud.jobs.jobs[json.loads(proc.stdout)["job"].rsplit("/", 1)[-1]]
    env = {e.name: e.value for e in job.job_spec.worker_pool_specs[0].container_spec.env}
    assert "HF_TOKEN" not in env and "HFGATE_TOKEN_SECRET_VERSION" not in env and env["HF_HUB_OFFLINE"] == "1"
    assert "HTTPS_PROXY" not in env
    args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
    assert args[args.index("--model_name_or_path") + 1].startswith(f"/gcs/{cloud.outputs.mirror_bucket_name}/models/")
    assert "hfgate-bootstrap: verified" in "\n".join(line for _, line in cloud.jobs.logs[job.name.rsplit("/", 1)[-1]])
    logs = [line for _, line in cloud.jobs.logs[job.name.rsplit("/", 1)[-1]]]
    assert "probe: HF_TOKEN sha256 absent" in logs


# Hugging Face Jobs -------------------------------------------------------------------------------------------------
def test_hf_jobs_backend_passes_the_token_as_a_secret_only(cloud):
    token = cloud.hub_tokens["alice-write"]
    set_token(cloud, token)
    proc = hfgate(cloud, "submit", "--backend", "hf-jobs", "--model", GATED, "--dataset", DATASET, "--max-steps",
                  "1", "--wait", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["state"] == "COMPLETED" and out["flavor"] == "cpu-upgrade"
    job = cloud.hub_state.jobs[out["job"]]
    assert job["secrets"] == {"HF_TOKEN": token}                    # stored among the secrets
    assert "HF_TOKEN" not in job["environment"] and token not in json.dumps(job["environment"])
    assert "$HF_TOKEN" not in json.dumps({k: v for k, v in job.items() if k not in ("cancel", "logs")})
    from huggingface_hub import HfApi
    shown = HfApi(endpoint=cloud.hub.url).inspect_job(job_id=out["job"], namespace="alice", token=token)
    assert shown.status.stage == "COMPLETED" and token not in repr(shown)
    logs = [line for _, line in job["logs"]]
    assert f"probe: HF_TOKEN sha256 {HfToken(token).fingerprint}" in logs      # the job got the real value
    assert token not in proc.stdout + proc.stderr


def test_hf_jobs_with_a_read_token_is_refused_with_the_fix(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    n = len(cloud.hub_state.jobs)
    proc = hfgate(cloud, "submit", "--backend", "hf-jobs", "--model", GATED, "--dataset", DATASET)
    assert proc.returncode == 4 and "run jobs" in proc.stderr
    assert len(cloud.hub_state.jobs) == n


def test_hf_jobs_flavor_mapping_and_unknown_pairs():
    from jobs.errors import UsageError
    from jobs.hfjobs import flavor_for
    assert flavor_for("NVIDIA_L4", 1) == "l4x1" and flavor_for("NVIDIA_A100_80GB", 8) == "a100x8"
    assert flavor_for(None, 0) == "cpu-upgrade"
    with pytest.raises(UsageError, match="--flavor"):
        flavor_for("NVIDIA_H100_80GB", 8)


def test_mirror_submit_refuses_a_mirror_whose_manifest_does_not_verify(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    cloud.hub_state.add_repo("hfgate-demo/tiny-open-lm", {"tamper-test.txt": f"{time.time()}".encode()})
    for args in (["--model", "hfgate-demo/tiny-open-lm"], ["--dataset", DATASET]):
        assert hfgate(cloud, "mirror", *args).returncode == 0
    commit = cloud.hub_state.repos["hfgate-demo/tiny-open-lm"].refs["main"]
    bucket = cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name)
    bucket.blob(f"models/hfgate-demo/tiny-open-lm/{commit}/model.safetensors").upload_from_string(b"tampered")
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", "hfgate-demo/tiny-open-lm", "--dataset", DATASET,
                  "--token-delivery", "mirror", "--force-new")
    assert proc.returncode == 1 and "does not verify" in proc.stderr and "hfgate mirror" in proc.stderr
    assert cloud.jobs.create_calls == before

"""Attacks on the token, performed against the local cloud, each shown to fail.

- A look-alike bootstrap planted in the buckets (at every name a job ever read it from) never runs.
- A mirror file patched so that size and CRC32C still match is caught by SHA-256, at submit and inside the job.
- A planted mirror folder with a self-declared newer date is never chosen: the folder is picked by commit.
- Mirrors live in a bucket jobs cannot write.
- A job pre-created with the victim's request-id label but another spec is not followed.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import google_crc32c
import pytest

from jobs.jobspec import BOOTSTRAP_SOURCE, TrainRequest, build_custom_job
from jobs.token import HfToken
from tests.conftest import ROOT, hfgate, set_token
from tests.test_submit import DATASET, GATED

PLANTED = """import hashlib, os
print("PLANTED-CODE-RAN", hashlib.sha256(os.environ.get("HF_TOKEN", "").encode()).hexdigest()[:8], flush=True)
"""


def _job(cloud, proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = json.loads(proc.stdout)["job"].rsplit("/", 1)[-1]
    return job_id, cloud.jobs.jobs[job_id], [line for _, line in cloud.jobs.logs[job_id]]


def test_a_planted_bootstrap_never_runs_and_never_sees_the_token(cloud):
    token = cloud.hub_tokens["alice-read"]
    set_token(cloud, token)
    gcs = cloud.gcs.client()
    # Every name a job ever read its first code from (the old content-addressed names, for the current bootstrap
    # and short digests an attacker would guess), plus look-alikes next to the run's output.
    digest = hashlib.sha256(BOOTSTRAP_SOURCE.encode()).hexdigest()
    names = [f"hfgate/bootstrap-{digest[:16]}.py", f"hfgate/bootstrap-{digest}.py", "hfgate/bootstrap.py",
             "bootstrap.py"]
    for bucket in (cloud.outputs.staging_bucket_name, cloud.outputs.artifacts_bucket_name,
                   cloud.outputs.mirror_bucket_name):
        for name in names:
            gcs.bucket(bucket).blob(name).upload_from_string(PLANTED)
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--wait", "--json",
                  "--display-name", f"planted-{int(time.time())}")
    job_id, job, logs = _job(cloud, proc)
    assert json.loads(proc.stdout)["state"] == "JOB_STATE_SUCCEEDED"
    assert not any("PLANTED-CODE-RAN" in line for line in logs)
    assert f"probe: HF_TOKEN sha256 {HfToken(token).fingerprint}" in logs     # the real bootstrap delivered it
    command = list(job.job_spec.worker_pool_specs[0].container_spec.command)
    assert command[:2] == ["python3", "-c"] and command[2] == BOOTSTRAP_SOURCE
    for argv in cloud.jobs.cmdlines[job_id]:
        assert not any(a.endswith(".py") for a in argv), argv              # nothing was run from a file


def forge_crc32c(data: bytes, pos: int, target: int) -> bytes:
    """Patch 4 bytes at `pos` so that the CRC32C of the result is `target` (CRC is linear: no search needed)."""
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    top = {t >> 24: i for i, t in enumerate(table)}

    def step(r, b):
        return (r >> 8) ^ table[(r ^ b) & 0xFF]

    def unstep(r, b):
        i = top[r >> 24]
        return (((r ^ table[i]) << 8) & 0xFFFFFFFF) | (i ^ b)

    reg = 0xFFFFFFFF
    for b in data[:pos]:
        reg = step(reg, b)
    want = target ^ 0xFFFFFFFF
    for b in reversed(data[pos + 4:]):
        want = unstep(want, b)
    for _ in range(4):
        want = unstep(want, 0)
    patch = (reg ^ want).to_bytes(4, "little")
    return data[:pos] + patch + data[pos + 4:]


def _mirror(cloud) -> tuple[str, str]:
    """A repo of this test's own (a copy of the open tiny model), mirrored with the dataset: (repo id, commit)."""
    set_token(cloud, cloud.hub_tokens["alice-read"])
    source = cloud.hub_state.repos["hfgate-demo/tiny-open-lm"]
    repo = f"hfgate-demo/attack-{time.time_ns()}"
    cloud.hub_state.add_repo(repo, dict(source.commits[source.refs["main"]]))
    for args in (["--model", repo], ["--dataset", DATASET]):
        proc = hfgate(cloud, "mirror", *args)
        assert proc.returncode == 0, proc.stderr
    return repo, cloud.hub_state.repos[repo].refs["main"]


def test_a_crc32c_preserving_patch_is_caught_by_sha256_at_submit(cloud):
    repo, commit = _mirror(cloud)
    blob = cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name).blob(f"models/{repo}/{commit}/config.json")
    original = blob.download_as_bytes()
    tampered = forge_crc32c(original.replace(b"{", b"{    ", 1)[:len(original)], 8,
                            int.from_bytes(google_crc32c.Checksum(original).digest(), "big"))
    assert len(tampered) == len(original) and tampered != original
    assert google_crc32c.Checksum(tampered).digest() == google_crc32c.Checksum(original).digest()   # forged
    blob.upload_from_string(tampered)
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", repo, "--dataset", DATASET, "--token-delivery", "mirror",
                  "--force-new")
    assert proc.returncode == 1 and "config.json does not match its SHA-256" in proc.stderr
    assert cloud.jobs.create_calls == before


def test_a_planted_mirror_folder_with_a_newer_date_is_never_chosen(cloud):
    repo, commit = _mirror(cloud)
    bucket = cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name)
    real = json.loads(bucket.blob(f"models/{repo}/{commit}/hfgate-manifest.json").download_as_bytes())
    fake_commit = "f" * 40
    planted = {**real, "commit": fake_commit, "revision": "main", "mirrored_at": "2999-01-01T00:00:00+00:00",
               "files": [{"path": "config.json", "size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()}]}
    bucket.blob(f"models/{repo}/{fake_commit}/config.json").upload_from_string(b"{}")
    bucket.blob(f"models/{repo}/{fake_commit}/hfgate-manifest.json").upload_from_string(json.dumps(planted))
    # A manifest planted in the real commit's sibling folder that claims to be that commit is refused too.
    proc = hfgate(cloud, "submit", "--model", repo, "--dataset", DATASET, "--token-delivery", "mirror", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["custom_job"]["job_spec"]["worker_pool_specs"][0]["container_spec"]
    model_path = spec["args"][spec["args"].index("--model_name_or_path") + 1]
    assert model_path.endswith(f"/models/{repo}/{commit}") and fake_commit not in json.dumps(spec)


def test_the_job_itself_refuses_a_mirror_changed_after_submit(cloud):
    """Between the submit's check and the job's start, a mirror file changes: the bootstrap, checking SHA-256 inside
    the job before trl starts, fails the job; the trainer never runs."""
    from jobs import api
    from jobs import vertex as submit
    from jobs.jobspec import TokenDelivery
    from jobs.mirrors import prefix_for, require_mirror
    repo, commit = _mirror(cloud)
    dataset_commit = cloud.hub_state.repos[DATASET].refs["main"]
    outputs = cloud.outputs
    checks, paths = [], []
    with cloud.environ():
        for repo_id, c, kind in ((repo, commit, "model"), (DATASET, dataset_commit, "dataset")):
            _, digest = require_mirror(outputs, repo_id, c, kind)        # what submit checks
            path = f"/gcs/{outputs.mirror_bucket_name}/{prefix_for(repo_id, c, kind)}".rstrip("/")
            checks.append({"dir": path, "manifest_sha256": digest})
            paths.append(path)
        body = build_custom_job(TrainRequest(model=repo, dataset=DATASET, token_delivery=TokenDelivery.MIRROR,
                                             display_name=f"toctou-{int(time.time())}", nonce=str(time.time())),
                                outputs, token_version="", token_fingerprint="", model_path=paths[0],
                                dataset_path=paths[1], mirror_checks=checks)
        cloud.gcs.client().bucket(outputs.mirror_bucket_name).blob(
            f"models/{repo}/{commit}/model.safetensors").upload_from_string(b"swapped after submit")
        created, _ = submit.create(body, outputs)
        job = api.wait(outputs, created.name, poll_s=0.2, timeout_s=120)
    logs = [line for _, line in cloud.jobs.logs[job.job.rsplit("/", 1)[-1]]]
    assert job.state == "JOB_STATE_FAILED"
    assert any("model.safetensors" in line and "SHA-256" in line for line in logs), logs
    assert not any(line.startswith("probe:") for line in logs)               # trl never started


def test_the_bootstrap_refuses_extra_files_and_a_swapped_manifest(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_bytes(b"{}")
    manifest = json.dumps({"files": [{"path": "config.json", "sha256": hashlib.sha256(b"{}").hexdigest()}]}).encode()
    (folder / "hfgate-manifest.json").write_bytes(manifest)

    def run(digest):
        env = {"PATH": os.environ["PATH"], "HFGATE_VERIFY": json.dumps([{"dir": str(folder), "manifest_sha256": digest}])}
        return subprocess.run([sys.executable, "-c", BOOTSTRAP_SOURCE, "--", "echo", "TRAINER-STARTED"], env=env,
                              capture_output=True, text=True, timeout=30)
    ok = run(hashlib.sha256(manifest).hexdigest())
    assert ok.returncode == 0 and "TRAINER-STARTED" in ok.stdout
    swapped = run("0" * 64)
    assert swapped.returncode == 68 and "not the one checked at submit" in swapped.stderr and not swapped.stdout
    (folder / "modeling_evil.py").write_text("import os")
    extra = run(hashlib.sha256(manifest).hexdigest())
    assert extra.returncode == 68 and "modeling_evil.py" in extra.stderr and not extra.stdout


def test_jobs_cannot_write_the_mirror_bucket(plans):
    for env, data in plans.items():
        mirrors = {v["bucket"] for v in data["resource"]["google_storage_bucket_iam_member"].values()
                   if "mirror" in v["bucket"]}
        assert mirrors, env
        for bucket in mirrors:         # each team's mirror (one without teams)
            grants = [v for v in data["resource"]["google_storage_bucket_iam_member"].values()
                      if v["bucket"] == bucket]
            trainer = [g["role"] for g in grants if "trainer" in g["member"]]
            submitter = [g["role"] for g in grants if "submitter" in g["member"]]
            assert trainer == ["roles/storage.objectViewer"] and submitter == ["roles/storage.objectUser"], env


def test_a_look_alike_job_with_the_victims_request_id_is_not_followed(cloud):
    """Someone who may create jobs pre-creates one with the request id the victim's submit will compute (it is a
    function of public inputs and the token fingerprint, which labels show), running as another account with
    another command. The victim's submit ignores it and creates its own."""
    token = cloud.hub_tokens["alice-read"]
    version = set_token(cloud, token)
    name = f"victim-{int(time.time())}"
    victim = build_custom_job(TrainRequest(model=GATED, dataset=DATASET, display_name=name), cloud.outputs,
                              token_version=version, token_fingerprint=HfToken(token).fingerprint,
                              model_commit=cloud.hub_state.repos[GATED].refs["main"])
    rid = victim["labels"]["hfgate-request-id"]
    attacker = "serviceAccount:mallory@hfgate-local.iam.gserviceaccount.com"
    cloud.grants.add(attacker, "roles/aiplatform.user")
    cloud.grants.add(attacker, "roles/iam.serviceAccountUser", f"serviceAccount:{cloud.outputs.submitter_email}")
    look_alike = json.loads(json.dumps(victim))
    pool = look_alike["job_spec"]["worker_pool_specs"][0]
    look_alike["job_spec"]["service_account"] = cloud.outputs.submitter_email
    pool["container_spec"]["command"] = ["python3", "-c", "print('look-alike')"]
    pool["container_spec"]["args"] = []
    code = ("import json, sys\nfrom google.cloud.aiplatform_v1 import JobServiceClient, types\nfrom jobs import endpoints"
            "\nc = endpoints.vertex(sys.argv[2])\nj = c.create_custom_job(parent=sys.argv[1], custom_job=types.CustomJob"
            ".from_json(sys.stdin.read()))\nprint(j.name)")
    env = {**os.environ, **cloud.env(as_member=attacker)}
    made = subprocess.run([sys.executable, "-c", code, f"projects/{cloud.outputs.project_id}/locations/"
                           f"{cloud.outputs.region}", cloud.outputs.region], input=json.dumps(look_alike), env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    planted = made.stdout.strip()
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--display-name", name, "--json", "-v")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["created"] is True and out["job"] != planted and out["request_id"] == rid
    assert "not the spec hfgate built" in proc.stderr
    # And a second submit of the same request follows the victim's own job, not the look-alike.
    again = json.loads(hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--display-name", name,
                              "--json").stdout)
    assert again["created"] is False and again["job"] == out["job"]


@pytest.mark.parametrize("pasted", ["$hf_" + "Abcdefghijklmnopqrstuvwxyzabcdefgh", "${hf_" + "Q" * 34 + "}"])
def test_the_placeholder_error_never_echoes_what_was_pasted(cloud, pasted):
    from tests.test_lifecycle import token_set
    proc = token_set(cloud, pasted + "\n", "set")
    assert proc.returncode == 3 and "placeholder" in proc.stderr
    assert pasted[1:17] not in proc.stderr + proc.stdout and pasted[2:18] not in proc.stderr + proc.stdout


def _rewrite(bucket, prefix: str, manifest: dict, path: str, data: bytes) -> dict:
    """What a writer of the mirror bucket can do: change a file and its manifest entry together, consistently."""
    bucket.blob(prefix + path).upload_from_string(data)
    files = [f if f["path"] != path else {**f, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
             for f in manifest["files"]]
    forged = {**manifest, "files": files}
    bucket.blob(prefix + "hfgate-manifest.json").upload_from_string(json.dumps(forged))
    return forged


def test_a_mirror_rewritten_with_its_manifest_is_refused_against_the_hub(cloud):
    """Weights and manifest rewritten together pass the manifest's own check; the Hub's hashes for the commit
    (LFS SHA-256 for the weights, git blob id for small files) refuse them, at submit and at `hfgate mirror`."""
    repo, commit = _mirror(cloud)
    bucket = cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name)
    prefix = f"models/{repo}/{commit}/"
    manifest = json.loads(bucket.blob(prefix + "hfgate-manifest.json").download_as_bytes())
    weights = bucket.blob(prefix + "model.safetensors").download_as_bytes()
    _rewrite(bucket, prefix, manifest, "model.safetensors", weights[:-8] + b"\x00" * 8)
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", repo, "--dataset", DATASET, "--token-delivery", "mirror",
                  "--force-new")
    assert proc.returncode == 1 and "model.safetensors is not the file the Hub serves" in proc.stderr
    assert "LFS SHA-256" in proc.stderr and cloud.jobs.create_calls == before
    uploads = [b.updated for b in bucket.list_blobs(prefix=prefix)]
    proc = hfgate(cloud, "mirror", "--model", repo)
    assert proc.returncode == 1 and "someone other than `hfgate mirror` wrote it" in proc.stderr
    assert "Nothing was uploaded" in proc.stderr
    assert [b.updated for b in bucket.list_blobs(prefix=prefix)] == uploads
    # A small (non-LFS) file rewritten the same way is caught by its git blob id.
    manifest = json.loads(bucket.blob(prefix + "hfgate-manifest.json").download_as_bytes())
    _rewrite(bucket, prefix, manifest, "model.safetensors", weights)
    _rewrite(bucket, prefix, json.loads(bucket.blob(prefix + "hfgate-manifest.json").download_as_bytes()),
             "config.json", b'{"added": "by someone"}')
    proc = hfgate(cloud, "submit", "--model", repo, "--dataset", DATASET, "--token-delivery", "mirror",
                  "--force-new")
    assert proc.returncode == 1 and "config.json is not the file the Hub serves" in proc.stderr
    assert "git blob id" in proc.stderr and cloud.jobs.create_calls == before


def test_a_mirror_planted_for_a_commit_before_it_is_mirrored_is_refused(cloud):
    """A writer of the mirror bucket plants the folder (weights and a matching manifest) of a commit nobody has
    mirrored yet: `hfgate mirror` no longer says "already mirrored"; it refuses and uploads nothing."""
    repo, _ = _mirror(cloud)
    hub_repo = cloud.hub_state.repos[repo]
    new_commit = hub_repo.commit({"README.md": b"---\nlicense: apache-2.0\n---\nv2\n"})
    bucket = cloud.gcs.client().bucket(cloud.outputs.mirror_bucket_name)
    prefix = f"models/{repo}/{new_commit}/"
    files = dict(hub_repo.commits[new_commit])
    files["model.safetensors"] = files["model.safetensors"][:-8] + b"\x01" * 8
    entries = []
    for path, data in sorted(files.items()):
        bucket.blob(prefix + path).upload_from_string(data)
        entries.append({"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    bucket.blob(prefix + "hfgate-manifest.json").upload_from_string(json.dumps({
        "hfgate_manifest": 1, "id": repo, "type": "model", "revision": "main", "commit": new_commit,
        "files": entries}))
    names = sorted(b.name for b in bucket.list_blobs(prefix=prefix))
    proc = hfgate(cloud, "mirror", "--model", repo)
    assert proc.returncode == 1, proc.stderr
    assert "already mirrored" not in proc.stderr + proc.stdout
    assert "is not what the Hub serves" in proc.stderr and "model.safetensors" in proc.stderr
    assert sorted(b.name for b in bucket.list_blobs(prefix=prefix)) == names
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", repo, "--dataset", DATASET, "--token-delivery", "mirror",
                  "--force-new")
    assert proc.returncode == 1 and cloud.jobs.create_calls == before


def test_an_untrusted_training_image_is_refused_before_the_token_is_read(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    reads = [c for c in cloud.secrets.calls if c[0] == "access"]
    before = cloud.jobs.create_calls
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--image",
                  "docker.io/someone/trl:latest", "--force-new")
    assert proc.returncode == 4, proc.stderr
    assert "neither from a trusted registry" in proc.stderr and "sha256" in proc.stderr
    assert cloud.jobs.create_calls == before
    assert [c for c in cloud.secrets.calls if c[0] == "access"] == reads

"""Faults (the local cloud's knobs) and leak-proofing (a canary token through every command and failure path)."""
from __future__ import annotations

import json
import time

from google.cloud.aiplatform_v1 import types as ai

from tests.conftest import hfgate, set_token
from tests.test_lifecycle import token_set
from tests.test_submit import DATASET, GATED, wait_done


def test_submit_under_a_vertex_503_burst_creates_exactly_one_job(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    name = f"burst-{int(time.time())}"
    cloud.jobs.unavailable = 2                 # the duplicate check fails twice
    cloud.jobs.lose_create_responses = 1       # then the create succeeds but its answer is lost
    try:
        proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--display-name", name, "--json")
    finally:
        cloud.jobs.unavailable = cloud.jobs.lose_create_responses = 0
    assert proc.returncode == 0, proc.stderr
    mine = [j for j in cloud.jobs.jobs.values() if j.display_name == name]
    assert len(mine) == 1
    assert json.loads(proc.stdout)["job"] == mine[0].name
    wait_done(cloud, mine[0].name.rsplit("/", 1)[-1])


def test_submit_under_a_permanent_vertex_outage_gives_up_in_bounded_time_and_creates_nothing(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    before = len(cloud.jobs.jobs)
    cloud.jobs.unavailable = 10 ** 6
    t0 = time.time()
    try:
        proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--force-new")
    finally:
        cloud.jobs.unavailable = 0
    assert proc.returncode == 6, proc.stderr
    assert "try again" in proc.stderr and time.time() - t0 < 30
    assert len(cloud.jobs.jobs) == before


def test_a_crashing_trainer_is_reported_failed_with_its_log_tail(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--wait", "--",
                  "--probe_crash")
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "simulated trainer crash" in proc.stderr


def test_a_canary_token_leaks_nowhere(cloud, synth_dir):
    """The canary is a real (write) token of alice's, stored in the secret and exported as HF_TOKEN in the CLI's
    environment too; every command and failure path runs at -v."""
    canary = cloud.hub_state.add_token("alice", "write", "canary").value
    env = {"HF_TOKEN": canary}
    runs = []

    def run(*args, **kw):
        proc = hfgate(cloud, *args, extra_env=env, **kw)
        runs.append((args, proc))
        return proc

    stored = token_set(cloud, canary + "\n", "set", "--model", GATED, "-v")
    runs.append((("token", "set"), stored))
    assert stored.returncode == 0, stored.stderr
    run("token", "status", "-v", as_member=cloud.admin)
    run("check", "--model", GATED, "-v")
    run("check", "--model", GATED, "-v", "--json")
    ok = run("submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--wait", "--json", "-v")
    assert ok.returncode == 0, ok.stderr
    job_id = json.loads(ok.stdout)["job"].rsplit("/", 1)[-1]
    run("status", job_id, "-v")
    run("logs", job_id, "-v")
    run("submit", "--model", GATED, "--dataset", DATASET, "--token-delivery", "env", "--dry-run", "-v")
    run("submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--wait", "-v", "--", "--probe_crash")
    run("submit", "--backend", "hf-jobs", "--model", GATED, "--dataset", DATASET, "--wait", "--json", "-v")
    run("mirror", "--model", GATED, "-v")
    # failure paths
    run("check", "--model", "hfgate-demo/does-not-exist", "-v")
    run("check", "--model", "acme/Private-LM", "-v")
    run("submit", "--model", GATED, "--dataset", DATASET, "-v", "--force-new",
        as_member="serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com")
    cloud.jobs.quota_exhausted = True
    try:
        run("submit", "--model", GATED, "--dataset", DATASET, "--force-new", "-v", "--machine-type", "g2-standard-8",
            "--accelerator", "NVIDIA_L4", "--accelerator-count", "1")
    finally:
        cloud.jobs.quota_exhausted = False
    cloud.hub_state.set_fault("/api/", fail_503=1000)
    try:
        run("check", "--model", GATED, "-v")
    finally:
        cloud.hub_state.clear_faults()
    saved = {t for t in cloud.grants.triples if t[1] == "roles/iam.serviceAccountUser"}
    cloud.grants.triples -= saved
    try:
        run("submit", "--model", GATED, "--dataset", DATASET, "--force-new", "-v")
    finally:
        cloud.grants.triples |= saved
    run("cancel", job_id, "-v")

    codes = [p.returncode for _, p in runs]
    assert 0 in codes and {1, 4, 5, 6} <= set(codes)          # success and failure paths were both exercised
    for args, proc in runs:
        assert canary not in proc.stdout and canary not in proc.stderr, f"leaked by {args}"
    # Job specs and labels (secret-ref and mirror jobs), job logs, argv of every process the executor saw.
    for jid, job in cloud.jobs.jobs.items():
        if job.labels.get("hfgate-delivery") != "env":
            assert canary not in ai.CustomJob.to_json(job), f"job {jid} spec"
        assert canary not in json.dumps(dict(job.labels))
        assert all(canary not in line for _, line in cloud.jobs.logs.get(jid, []))
        assert canary not in json.dumps(cloud.jobs.cmdlines.get(jid, []))
    assert any(cloud.jobs.cmdlines.values())
    # Hugging Face Jobs: the canary is among the secrets of its job, never in its environment or logs.
    hf_jobs = [j for j in cloud.hub_state.jobs.values() if j["secrets"].get("HF_TOKEN") == canary]
    assert hf_jobs
    for j in cloud.hub_state.jobs.values():
        assert canary not in json.dumps(j["environment"]) and canary not in json.dumps(j["command"])
        assert all(canary not in line for _, line in j["logs"])
    # Every file the local cloud wrote (job folders, the /gcs mirror, the GCS emulator's sync) and every
    # synthesized file.
    for root in (cloud.state_dir, synth_dir):
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_size < 50 * 1024 * 1024:
                assert canary.encode() not in path.read_bytes(), f"leaked into {path}"


DEBUG_SWITCHES = {"HF_DEBUG": "1", "GOOGLE_SDK_PYTHON_LOGGING_SCOPE": "google", "HF_HUB_VERBOSITY": "debug",
                  "GRPC_TRACE": "all", "GRPC_VERBOSITY": "debug"}


def leak_forms(secret: str) -> dict[str, str]:
    """The secret as it could appear in output: raw, hex, URL-encoded, and base64 at each of the three alignments it
    can have inside a larger payload (standard and URL-safe alphabets)."""
    import base64
    import urllib.parse
    raw = secret.encode()
    forms = {"raw": secret, "hex": raw.hex(), "HEX": raw.hex().upper(), "url": urllib.parse.quote(secret, safe=""),
             "url+": urllib.parse.quote_plus(secret)}
    for skip in range(3):
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            core = enc(raw[skip:]).decode().rstrip("=")[:-4]      # the part that does not depend on neighbours
            forms[f"{name}@{skip}"] = core
    return forms


def test_no_library_debug_switch_prints_the_token(cloud):
    """Every debug switch of the libraries on, at -v, through token set, check, submit (Vertex and HF Jobs, a
    refused submit included) and mirror: no output carries the token in any encoding, nor a signed URL's query."""
    canary = cloud.hub_state.add_token("alice", "read", "debug-canary").value
    forms = leak_forms(canary)
    runs = []

    def run(*args, **kw):
        proc = hfgate(cloud, *args, extra_env=DEBUG_SWITCHES, **kw)
        runs.append((args, proc))
        return proc

    import os
    import subprocess
    import sys
    from tests.conftest import ROOT
    stored = subprocess.run([sys.executable, "-m", "jobs.cli", "token", "set", "--model", GATED, "-v"],
                            input=canary + "\n", cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **cloud.env(as_member=cloud.admin), **DEBUG_SWITCHES})
    runs.append((("token", "set"), stored))
    assert stored.returncode == 0, stored.stderr
    run("check", "--model", GATED, "-v")
    ok = run("submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--wait", "-v")
    assert ok.returncode == 0, ok.stderr[-2000:]
    run("submit", "--backend", "hf-jobs", "--model", GATED, "--dataset", DATASET, "-v")
    run("mirror", "--model", GATED, "-v")
    run("mirror", "--dataset", DATASET, "-v")
    run("submit", "--model", GATED, "--dataset", DATASET, "--token-delivery", "mirror", "--force-new", "-v")
    cloud.hub_state.set_fault("/api/jobs", fail_503=1000)
    try:   # the Hub refuses the Jobs request: the body with the secret must not be printed either
        refused = run("submit", "--backend", "hf-jobs", "--model", GATED, "--dataset", DATASET, "-v", "--force-new")
    finally:
        cloud.hub_state.clear_faults()
    assert refused.returncode != 0
    for args, proc in runs:
        text = proc.stdout + proc.stderr
        for name, form in forms.items():
            assert form not in text, f"{name} form of the token printed by {args}"
        assert "Signature=" not in text and "Expires=" not in text, f"signed URL printed by {args}"
    # The switches were seen and turned off, with a warning saying why.
    assert "ignoring HF_DEBUG" in stored.stderr and "ignoring GOOGLE_SDK_PYTHON_LOGGING_SCOPE" in stored.stderr


def test_the_leak_forms_find_the_token_inside_encoded_payloads():
    import base64
    import json as _json
    secret = "hf_" + "Q" * 17 + "r" * 17
    forms = leak_forms(secret)
    for prefix in (b"", b"x", b"xy", b'{"data": "'):
        payload = base64.b64encode(prefix + secret.encode() + b"\n").decode()
        assert any(f in payload for k, f in forms.items() if k.startswith("b64@")), prefix
    assert forms["url"] in _json.dumps({"u": f"https://h/?t={forms['url']}"})

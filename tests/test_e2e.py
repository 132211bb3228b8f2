"""End to end: `make demo`'s program, run as it is, then checked from the evidence it keeps.

The real trl sft trains the tiny gated Llama inside a local Vertex job, reading the token through the bootstrap.
"""
from __future__ import annotations

import json
import os

import pytest


pytest.importorskip("trl", reason="the end-to-end test needs the train extra (make test installs it)")


@pytest.fixture(scope="module")
def demo(demo_run):
    proc, evidence = demo_run
    files = {p.name: p.read_text() for p in evidence.iterdir()}
    return proc, files, json.loads(files.get("summary.json") or "{}"), json.loads(files["hub-tokens.json"])


def test_demo_trains_the_gated_model_and_the_result_loads(demo):
    proc, files, summary, _ = demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary["state"] == "JOB_STATE_SUCCEEDED"
    assert summary["create_calls"] == 1
    trainer = summary["trainer"]
    assert trainer["steps"] == 12 and len(trainer["losses"]) == 12
    assert trainer["final_loss"] < trainer["first_loss"]          # TRL logged a loss that went down
    names = {a.rsplit("/", 1)[-1] for a in summary["artifacts"]}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= names
    assert all(a.startswith("runs/hfgate-demo/model/") for a in summary["artifacts"])
    assert summary["loaded"]["class"] == "LlamaForCausalLM" and summary["loaded"]["parameters"] > 50_000
    assert "demo complete" in proc.stdout


def test_the_demo_publishes_its_fine_tune_privately_and_it_loads_back_from_the_hub(demo):
    _, files, summary, _ = demo
    pub = summary["published"]
    assert pub["exit_code"] == 0 and pub["private"] is True and pub["repo"] == "acme/tiny-gated-lm-sft"
    assert pub["again_uploaded"] == 0 and pub["commits"] == 1          # the second publish changed nothing
    assert pub["loaded_from_hub"] and pub["loaded"]["class"] == "LlamaForCausalLM"
    hub_log = json.loads(files["hub-requests.json"])
    commits = [r for r in hub_log if r["method"] == "POST" and r["path"].startswith("/api/models/acme/tiny-gated-lm-sft/commit/")]
    assert len(commits) == 1 and commits[0]["user"] == "alice"
    # Publishing read the write token as the publisher; the read token was read only by training.
    calls = json.loads(files["secret-calls.json"])
    write_reads = [c for c in calls if c[0] == "access" and "/secrets/hfg-local-hf-write-token/" in c[2]]
    assert write_reads and {c[1] for c in write_reads} == {"serviceAccount:hfg-local-publisher@hfgate-local.iam.gserviceaccount.com"}
    read_readers = {c[1] for c in calls if c[0] == "access" and "/secrets/hfg-local-hf-token/" in c[2]}
    assert "serviceAccount:hfg-local-publisher@hfgate-local.iam.gserviceaccount.com" not in read_readers


def test_the_job_read_the_gated_model_with_alices_token_through_the_bootstrap(demo):
    _, files, summary, _ = demo
    hub_log = json.loads(files["hub-requests.json"])
    weights = [r for r in hub_log if r["path"].startswith("/hfgate-demo/tiny-gated-lm/resolve/")
               and r["path"].endswith("/model.safetensors")]
    assert weights and all(r["user"] == "alice" for r in weights)
    argv = json.loads(files["argv.json"])
    flat = [a for job in argv.values() for a in job]
    assert any(a[:2] == ["python3", "-c"] and "hfgate-bootstrap" in a[2] for a in flat)   # the container command
    assert any("sft" in a and any(os.path.basename(x) == "trl" for x in a[:2]) for a in flat)   # exec'd trainer
    calls = json.loads(files["secret-calls.json"])
    trainer = [c for c in calls if c[1].startswith("serviceAccount:hfg-local-trainer@")]
    assert trainer and all(c[2].endswith("/versions/1") for c in trainer)   # the pinned version, never latest


def test_the_blocked_user_is_stopped_by_the_preflight_and_creates_no_job(demo):
    _, _, summary, _ = demo
    blocked = summary["blocked"]
    assert blocked["exit_code"] == 4
    assert blocked["jobs_created"] == 0
    assert blocked["preflight_seconds"] < 1.0
    assert "accept the terms" in blocked["fix"] and "bob" in blocked["fix"]


def test_no_token_in_any_output_spec_label_log_or_argv(demo):
    proc, files, _, tokens = demo
    places = {"stdout": proc.stdout, "stderr": proc.stderr, **{k: v for k, v in files.items()
                                                               if k != "hub-tokens.json"}}
    for name in ("alice-read", "bob-read", "alice-fg-write-acme"):
        value = tokens[name]
        for where, text in places.items():
            assert value not in text, f"{name} token leaked into {where}"
    jobs = json.loads(files["jobs.json"])
    assert jobs
    for job in jobs.values():
        env = {e["name"] for p in job["jobSpec"]["workerPoolSpecs"] for e in p["containerSpec"].get("env", [])}
        assert "HF_TOKEN" not in env and "HFGATE_TOKEN_SECRET_VERSION" in env


def test_a_mirrored_model_trains_with_the_real_trl_and_no_token_or_hub_in_the_job(synth_dir, tiny_model):
    """`hfgate mirror` once with the token, then `submit --token-delivery mirror`: the real trainer reads the
    model and dataset from the bucket; the job's environment has no token and the Hub sees no request."""
    from localcloud import LocalCloud
    from localcloud.demo import DATASET, MODEL, trainer_metrics
    from localcloud.tinymodel import build_dataset
    from review.plan import synthesized
    from tests.conftest import hfgate, set_token

    with LocalCloud(plan=synthesized(synth_dir, "local")) as cloud:
        cloud.hub_state.add_repo(MODEL, tiny_model())
        cloud.hub_state.add_repo(DATASET, build_dataset(), type="dataset")
        token = cloud.hub_tokens["alice-read"]
        set_token(cloud, token)
        for args in (["--model", MODEL], ["--dataset", DATASET]):
            proc = hfgate(cloud, "mirror", *args)
            assert proc.returncode == 0, proc.stderr
        before = len(cloud.hub_state.log)
        proc = hfgate(cloud, "submit", "--model", MODEL, "--dataset", DATASET, "--token-delivery", "mirror",
                      "--max-steps", "4", "--no-lora", "--wait", "--json", "--", "--per_device_train_batch_size", "8",
                      "--max_length", "64", timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Only the CLI asked which commits `main` names (to pick the mirror folders) and listed those commits'
        # files (the proof against the Hub's hashes); the job made no request.
        shas = {r: cloud.hub_state.repos[r].refs["main"] for r in (MODEL, DATASET)}
        assert {r["path"] for r in cloud.hub_state.log[before:]} == {
            f"/api/models/{MODEL}/revision/main", f"/api/datasets/{DATASET}/revision/main",
            f"/api/models/{MODEL}/tree/{shas[MODEL]}", f"/api/datasets/{DATASET}/tree/{shas[DATASET]}"}
        assert all(r["user"] == "alice" for r in cloud.hub_state.log[before:])
        job_id = json.loads(proc.stdout)["job"].rsplit("/", 1)[-1]
        job = cloud.jobs.jobs[job_id]
        env = {e.name for e in job.job_spec.worker_pool_specs[0].container_spec.env}
        assert not env & {"HF_TOKEN", "HFGATE_TOKEN_SECRET_VERSION"}
        lines = [line for _, line in cloud.jobs.logs[job_id]]
        assert trainer_metrics(lines)["steps"] == 4
        assert any(line.startswith("hfgate-bootstrap: verified") for line in lines)   # checked in the job first
        assert not [c for c in cloud.secrets.calls if c[1] == cloud.trainer]     # the job never read the secret
        flat = json.dumps(cloud.jobs.cmdlines.get(job_id, []))
        assert token not in flat and "sft" in flat


def _transcript_skeleton(text: str) -> list[str]:
    """What must not drift between `make demo` and its transcript in the README: each step's header (number, total,
    title) without its time, each command shown, and the plan's resource count."""
    import re
    keep = []
    for line in text.splitlines():
        step = re.match(r"\[\s*[\d.]+s\] (\d+/\d+ .*)", line)
        if step:
            keep.append(step.group(1))
        elif line.startswith("$ "):
            keep.append(line)
        elif re.search(r"\(\d+ resources\)", line):
            keep.append(re.search(r"\(\d+ resources\)", line).group(0))
    return keep


def test_the_readme_transcript_is_what_make_demo_prints(demo):
    from tests.conftest import ROOT
    proc, *_ = demo
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```\nhfgate demo: fine-tune")
    transcript = readme[start:readme.index("demo complete\n```", start)]
    assert _transcript_skeleton(transcript) == _transcript_skeleton(proc.stdout)


def test_the_readme_publish_transcript_is_what_make_demo_prints(demo):
    """The publishing section quotes step 7 of the demo: its commands are the demo's, in order."""
    from tests.conftest import ROOT
    proc, *_ = demo
    readme = (ROOT / "README.md").read_text()
    start = readme.index("The demo's transcript (`make demo`, step 7):")
    block = readme[readme.index("```\n", start) + 4:]
    block = block[:block.index("```")]
    step7 = proc.stdout[proc.stdout.index("] 7/"):proc.stdout.index("] 8/")]
    quoted = [line for line in block.splitlines() if line.startswith("$ ")]
    assert quoted and quoted == [line for line in step7.splitlines() if line.startswith("$ ")]

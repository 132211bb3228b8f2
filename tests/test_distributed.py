"""Multi-node training and long jobs on the local cloud, with the real `trl sft` on CPU:

- `--replica-count 2` is ONE distributed run of world size 2 (torchrun over gloo, ranks from CLUSTER_SPEC), both
  replicas read the token through the bootstrap, rank 0 alone writes the model, and the job succeeds only when every
  replica does (one failing replica fails the job);
- a trainer killed mid-run leaves checkpoints in the run's folder, and the same request submitted again resumes
  from the newest one (the step count goes on).
"""
from __future__ import annotations

import ast
import json
import os
import time

import pytest


pytest.importorskip("trl", reason="needs the train extra (make test installs it)")


@pytest.fixture(scope="module")
def trl_cloud(synth_dir):
    from localcloud import LocalCloud
    from localcloud.demo import DATASET, MODEL
    from localcloud.tinymodel import build_dataset, build_model
    from review.plan import synthesized
    from tests.conftest import set_token
    with LocalCloud(plan=synthesized(synth_dir, "local")) as cloud:
        cloud.hub_state.add_repo(MODEL, build_model())
        cloud.hub_state.add_repo(DATASET, build_dataset(), type="dataset")
        set_token(cloud, cloud.hub_tokens["alice-read"])
        yield cloud, MODEL, DATASET


def _submit(cloud, *args, timeout=420):
    from tests.conftest import hfgate
    cut = args.index("--") if "--" in args else len(args)       # hfgate's options before --, trl's after
    return hfgate(cloud, "submit", *args[:cut], "--json", *args[cut:], timeout=timeout)


def _lines(cloud, job_id):
    return [line for _, line in cloud.jobs.logs[job_id]]


def test_two_replicas_train_as_one_run_of_world_size_2(trl_cloud):
    cloud, model, dataset = trl_cloud
    name = f"ddp-{int(time.time())}"
    proc = _submit(cloud, "--model", model, "--dataset", dataset, "--replica-count", "2", "--max-steps", "4",
                   "--no-lora", "--display-name", name, "--wait", "--", "--per_device_train_batch_size", "4",
                   "--max_length", "64")
    job_id = json.loads(proc.stdout)["job"].rsplit("/", 1)[-1]
    lines = _lines(cloud, job_id)
    assert proc.returncode == 0, "\n".join(line for line in lines if "warn" not in line.lower())[-6000:]
    text = "\n".join(lines)
    # Both replicas started through the bootstrap, read the token, and joined one torchrun of two nodes.
    assert text.count("hfgate-bootstrap: token read from") == 2
    assert "hfgate-bootstrap: node 0 of 2" in text and "hfgate-bootstrap: node 1 of 2" in text
    trainer = [c for c in cloud.secrets.calls if c[1] == cloud.trainer]
    assert len(trainer) >= 2                                         # each replica read the pinned version itself
    # One run of world size 2: 4 steps of 4 examples per device cover 32 of the 64 examples (epoch 0.5) only when
    # two ranks share the data; a lone replica would report epoch 0.25. The loss is all-reduced: ranks agree.
    summaries = [ast.literal_eval(line) for line in lines if line.startswith("{'train_runtime'")]
    assert summaries and all(float(s["epoch"]) == 0.5 for s in summaries), text[-3000:]
    steps = [ast.literal_eval(line) for line in lines if line.startswith("{'loss'")]
    assert {float(s["epoch"]) for s in steps} == {0.125, 0.25, 0.375, 0.5}
    argv = [a for job in cloud.jobs.cmdlines[job_id] for a in job]
    assert "torch.distributed.run" in argv and "--nnodes=2" in argv
    # One model, written once, in the run's folder.
    prefix = f"runs/{name}/model/"
    blobs = {b.name for b in cloud.gcs.client().list_blobs(cloud.outputs.artifacts_bucket_name, prefix=prefix)}
    assert prefix + "model.safetensors" in blobs and prefix + "config.json" in blobs


def test_one_failing_replica_fails_the_job(cloud):
    """The executor's rule, on a job whose second replica exits 3: the job is FAILED, naming that replica."""
    from google.cloud.aiplatform_v1 import types as ai
    from jobs import vertex
    from jobs.jobspec import TrainRequest, build_custom_job
    body = build_custom_job(TrainRequest(model="m/x", dataset="d/y", replica_count=2, nonce=str(time.time())),
                            cloud.outputs, token_version="projects/1/secrets/s/versions/1", token_fingerprint="x")
    body = json.loads(json.dumps(body))                              # pools share their spec in the builder
    pools = body["job_spec"]["worker_pool_specs"]
    pools[0]["container_spec"].update(command=["python3", "-c", "import time; time.sleep(30)"], args=[])
    pools[1]["container_spec"].update(command=["python3", "-c", "print('worker dies'); raise SystemExit(3)"], args=[])
    env_before = dict(os.environ)
    os.environ.update(cloud.env())
    try:
        job, _ = vertex.create(body, cloud.outputs)
        t0 = time.time()
        while vertex.get(job.name, cloud.outputs).state.name not in ("JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"):
            assert time.time() - t0 < 25, "the failing replica did not end the job"
            time.sleep(0.2)
        final = vertex.get(job.name, cloud.outputs)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert final.state == ai.JobState.JOB_STATE_FAILED
    assert "workerpool1-0 exited with a non-zero status of 3" in final.error.message
    assert time.time() - t0 < 25                                      # the sleeping chief was stopped


def test_a_killed_trainer_resumes_from_its_checkpoint_when_the_request_is_submitted_again(trl_cloud):
    from localcloud.demo import trainer_metrics
    cloud, model, dataset = trl_cloud
    name = f"resume-{int(time.time())}"
    steps = 60
    args = ["--model", model, "--dataset", dataset, "--max-steps", str(steps), "--no-lora", "--checkpoint-every", "3",
            "--display-name", name, "--", "--per_device_train_batch_size", "4", "--max_length", "64"]
    first = _submit(cloud, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    job_id = json.loads(first.stdout)["job"].rsplit("/", 1)[-1]
    run_dir = cloud.state_dir / "gcs" / cloud.outputs.artifacts_bucket_name / "runs" / name / "model"
    t0 = time.time()
    while not list(run_dir.glob("checkpoint-*/trainer_state.json")):     # the first checkpoint is written...
        assert time.time() - t0 < 300 and cloud.jobs.jobs[job_id].state.name in ("JOB_STATE_PENDING",
                                                                                 "JOB_STATE_RUNNING"), \
            "\n".join(_lines(cloud, job_id))[-3000:]
        time.sleep(0.05)
    from localcloud.vertex import _kill
    for proc in cloud.jobs.procs[job_id]:
        _kill(proc)                                                  # ...and the node dies (preemption)
    while cloud.jobs.jobs[job_id].state.name != "JOB_STATE_FAILED":
        assert cloud.jobs.jobs[job_id].state.name != "JOB_STATE_SUCCEEDED", "the trainer finished before the kill"
        time.sleep(0.2)
    done_first = trainer_metrics(_lines(cloud, job_id))["steps"]
    assert 3 <= done_first < steps
    # The same request again: a new job (the failed one is not reused), which resumes from the newest checkpoint.
    second = _submit(cloud, *args[:-5], "--wait", "--", *args[-4:])
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)
    assert out["created"] is True and out["state"] == "JOB_STATE_SUCCEEDED"
    lines = _lines(cloud, out["job"].rsplit("/", 1)[-1])
    resumed = [line for line in lines if "hfgate-bootstrap: resuming from" in line]
    assert resumed and "checkpoint-" in resumed[0]
    start = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert 3 <= start <= done_first
    assert trainer_metrics(lines)["steps"] == steps - start               # only the remaining steps ran

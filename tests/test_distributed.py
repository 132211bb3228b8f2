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
import time

import pytest


pytest.importorskip("trl", reason="needs the train extra (make test installs it)")


@pytest.fixture(scope="module")
def trl_cloud(synth_dir, tiny_model):
    from localcloud import LocalCloud
    from localcloud.demo import DATASET, MODEL
    from localcloud.tinymodel import build_dataset
    from review.plan import synthesized
    from tests.conftest import set_token
    with LocalCloud(plan=synthesized(synth_dir, "local")) as cloud:
        cloud.hub_state.add_repo(MODEL, tiny_model())
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
    with cloud.environ():
        job, _ = vertex.create(body, cloud.outputs)
        t0 = time.time()
        while vertex.get(job.name, cloud.outputs).state.name not in ("JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED"):
            assert time.time() - t0 < 25, "the failing replica did not end the job"
            time.sleep(0.2)
        final = vertex.get(job.name, cloud.outputs)
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
    run_dir = cloud.jobs.mount(job_id, cloud.outputs.artifacts_bucket_name) / "runs" / name / "model"
    t0 = time.time()
    while not list(run_dir.glob("checkpoint-*/hfgate-origin.json")):     # the first checkpoint is recorded...
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
    # Someone plants newer checkpoints in the run's folder (in the bucket, as another job of the team could): one
    # with no origin record, one with its record but other weights, one recorded for another request. None is
    # resumed from; each is skipped with the reason.
    import shutil
    bucket = cloud.gcs.client().bucket(cloud.outputs.artifacts_bucket_name)
    prefix = f"runs/{name}/model/"
    ours = max((b.name.split("/")[3] for b in bucket.list_blobs(prefix=prefix) if b.name.endswith("/hfgate-origin.json")),
               key=lambda d: int(d.split("-")[1]))
    real = {b.name[len(prefix) + len(ours) + 1:]: b.download_as_bytes() for b in bucket.list_blobs(prefix=prefix + ours + "/")}
    origin = json.loads(real["hfgate-origin.json"])
    for step, tweak in ((57, "no-origin"), (58, "changed"), (59, "other-request")):
        files = dict(real)
        if tweak == "no-origin":
            files.pop("hfgate-origin.json")
        elif tweak == "changed":
            files["model.safetensors"] = files["model.safetensors"][:-8] + b"\x00" * 8
        else:
            files["hfgate-origin.json"] = json.dumps({**origin, "request_id": "someone-elses"}).encode()
        for rel, data in files.items():
            bucket.blob(f"{prefix}checkpoint-{step}/{rel}").upload_from_string(data)
    shutil.rmtree(run_dir, ignore_errors=True)          # the next job mounts what the bucket holds
    # The same request again: a new job (the failed one is not reused), which resumes from the newest checkpoint
    # this request's own jobs wrote.
    second = _submit(cloud, *args[:-5], "--wait", "--", *args[-4:])
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)
    assert out["created"] is True and out["state"] == "JOB_STATE_SUCCEEDED"
    lines = _lines(cloud, out["job"].rsplit("/", 1)[-1])
    resumed = [line for line in lines if "hfgate-bootstrap: resuming from" in line]
    assert resumed and resumed[0].endswith(ours), resumed
    skipped = " ".join(line for line in lines if "hfgate-bootstrap: not resuming from" in line)
    assert "checkpoint-59: written for another request" in skipped
    assert "checkpoint-58: its files changed" in skipped
    assert "checkpoint-57: no origin record" in skipped
    start = int(resumed[0].rsplit("checkpoint-", 1)[1])
    assert 3 <= start <= done_first
    assert trainer_metrics(lines)["steps"] == steps - start               # only the remaining steps ran


# N nodes that end, logs by replica, progress -------------------------------------------------------------------
RUNS_OF_THREE = 2       # the teardown hang was a race (3 in 7 runs): more than one run, each asserting the bound
END_BOUND_S = 60        # README: a distributed job reaches SUCCEEDED within 60 s of its last training step


@pytest.mark.parametrize("run", range(RUNS_OF_THREE))
def test_three_replicas_end_when_training_ends_and_leave_nothing_behind(trl_cloud, run):
    import datetime as dt

    from localcloud.vertex import tagged
    from tests.conftest import hfgate
    cloud, model, dataset = trl_cloud
    name = f"ddp3-{run}-{int(time.time())}"
    proc = _submit(cloud, "--model", model, "--dataset", dataset, "--replica-count", "3", "--max-steps", "4",
                   "--no-lora", "--display-name", name, "--wait", "--", "--per_device_train_batch_size", "4",
                   "--max_length", "64", timeout=400)
    job_id = json.loads(proc.stdout)["job"].rsplit("/", 1)[-1]
    lines = _lines(cloud, job_id)
    assert proc.returncode == 0, "\n".join(line for line in lines if "warn" not in line.lower())[-6000:]
    job = cloud.jobs.jobs[job_id]
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    text = "\n".join(lines)
    assert all(f"hfgate-bootstrap: node {n} of 3" in text for n in range(3))
    # One run of world size 3: 12 examples a step, so an epoch of the 64 examples is 6 steps and 4 steps are
    # epoch 0.6667 (a lone replica would report 0.25). Every rank prints the step lines: the chief's view dedupes.
    summaries = [ast.literal_eval(line) for line in lines if line.startswith("{'train_runtime'")]
    assert summaries and all(float(s["epoch"]) == 0.6667 for s in summaries), text[-3000:]
    # It ended within the bound after its last step, and nothing it started is still running.
    last_step = max(ts for ts, line in cloud.jobs.logs[job_id] if line.startswith("{'loss'"))
    end = job.end_time.timestamp() if isinstance(job.end_time, dt.datetime) else job.end_time.ToSeconds()
    assert end - last_step < END_BOUND_S, (end - last_step, text[-3000:])
    assert tagged(job_id) == []
    # Logs by replica: the chief's by default (each step once), every replica's on request, prefixed, in order.
    chief = hfgate(cloud, "logs", job_id)
    assert chief.returncode == 0 and chief.stdout.count("{'loss'") == 4
    every = hfgate(cloud, "logs", job_id, "--all-replicas", "--json")
    tagged_lines = json.loads(every.stdout)
    assert {line.split("]", 1)[0] + "]" for line in tagged_lines if "hfgate-bootstrap: node" in line} == {
        "[workerpool0-0]", "[workerpool1-0]", "[workerpool1-1]"}
    entries = cloud.jobs.entries(job_id)
    assert [e["timestamp"] for e in entries] == sorted(e["timestamp"] for e in entries)
    # Progress, from the chief's step lines: the last step of 4, its loss, a rate.
    status = json.loads(hfgate(cloud, "status", job_id, "--json").stdout)
    progress = status["progress"]
    assert progress["step"] == 4 and progress["max_steps"] == 4 and progress["eta_s"] == 0
    assert progress["loss"] > 0 and progress["samples_per_second"] > 0


def test_a_node_whose_processes_outlive_the_run_is_stopped_saying_which_and_why(tmp_path):
    """The bootstrap's guard, on a stand-in launcher: every local rank reports done, then the launcher and a
    worker it started in a session of its own hang. After the grace period both are stopped and the replica fails
    with EXIT_TEARDOWN and a line naming the node."""
    import subprocess
    import sys
    from jobs import bootstrap
    done = tmp_path / "done"
    done.mkdir()
    hang = ("import os, subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            f"open({str(done / 'rank-0')!r}, 'w').write('0')\n"
            "time.sleep(300)\n")
    code = ("import sys; sys.path.insert(0, '.')\nfrom jobs import bootstrap\n"
            "env = {'PATH': '/usr/bin:/bin', 'HFGATE_DONE_DIR': sys.argv[1], 'HFGATE_PROCS_PER_NODE': '1',"
            " 'HFGATE_NODE': '2'}\n"
            "sys.exit(bootstrap.supervise([sys.executable, '-c', sys.argv[2]], env, grace_s=2, poll_s=0.2))")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code, str(done), hang], capture_output=True, text=True, timeout=60,
                          cwd=str(__import__("tests.conftest", fromlist=["ROOT"]).ROOT))
    assert proc.returncode == bootstrap.EXIT_TEARDOWN, proc.stderr
    assert time.time() - t0 < 30
    assert "node 2: training finished on every local rank" in proc.stderr and "stopped them" in proc.stderr
    leftovers = subprocess.run(["pgrep", "-f", "time.sleep(300)"], capture_output=True, text=True).stdout.split()
    assert leftovers == [], leftovers


def test_nothing_a_job_starts_outlives_it(cloud):
    """A replica that starts a process in a session of its own and exits: the process is stopped with the job,
    as a container's processes stop with the container; the same when the job is cancelled."""
    from jobs import vertex
    from jobs.jobspec import TrainRequest, build_custom_job
    from localcloud.vertex import tagged
    body = build_custom_job(TrainRequest(model="m/x", dataset="d/y", nonce=str(time.time())),
                            cloud.outputs, token_version="projects/1/secrets/s/versions/1", token_fingerprint="x")
    body = json.loads(json.dumps(body))
    spec = body["job_spec"]["worker_pool_specs"][0]["container_spec"]
    spec.update(command=["sh", "-c", "setsid sleep 300 & echo started; sleep \"$0\"", "0"], args=[])
    with cloud.environ():
        job, _ = vertex.create(body, cloud.outputs)
        job_id = job.name.rsplit("/", 1)[-1]
        t0 = time.time()
        while vertex.get(job.name, cloud.outputs).state.name != "JOB_STATE_SUCCEEDED":
            assert time.time() - t0 < 30
            time.sleep(0.2)
        assert tagged(job_id) == []
        spec["command"][-1] = "300"
        body["labels"]["hfgate-request-id"] += "x"
        job, _ = vertex.create(body, cloud.outputs)
        job_id = job.name.rsplit("/", 1)[-1]
        while not tagged(job_id):
            time.sleep(0.1)
        vertex.cancel(job.name, cloud.outputs)
        while vertex.get(job.name, cloud.outputs).state.name != "JOB_STATE_CANCELLED":
            assert time.time() - t0 < 60
            time.sleep(0.2)
        time.sleep(0.5)
        assert tagged(job_id) == []

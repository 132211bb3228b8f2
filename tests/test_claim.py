"""Exactly one job per request, whatever runs at the same moment (issue 35).

The local Cloud Storage honours request preconditions as Google documents them (the emulator alone does not, for
resumable uploads, deletes, compose and copy: localcloud.gcs_preconditions); on that, jobs.claim lets one caller of
many do the work: threads at a barrier and processes released at one start time submit one request and make one
job, every time, and every caller gets its name; a submitter killed between its claim and its create is taken over
after the lease, by one of two takers only. The same for mirrors.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from google.api_core import exceptions as gexc

from tests.conftest import ROOT, hfgate, set_token
from tests.test_submit import DATASET, GATED

ROUNDS = 3


def _staging(cloud):
    return cloud.gcs.client().bucket(cloud.outputs.staging_bucket_name)


def _jobs_of(cloud, rid: str) -> list:
    return [j for j in list(cloud.jobs.jobs.values()) if j.labels.get("hfgate-request-id") == rid]


# The local Cloud Storage and request preconditions -----------------------------------------------------------------

def test_the_emulator_alone_ignores_a_resumable_uploads_precondition(cloud):
    """Why the front exists: straight to fake-gcs-server, a resumable upload with ifGenerationMatch=0 replaces an
    existing object (Cloud Storage answers 412)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    raw = storage.Client(project=cloud.project_id, credentials=AnonymousCredentials(),
                         client_options={"api_endpoint": cloud.gcs.emulator_url}).bucket(
        cloud.outputs.staging_bucket_name)
    name = f"probe/raw-{time.time_ns()}"
    raw.blob(name).upload_from_string(b"first", if_generation_match=0)
    raw.blob(name, chunk_size=256 * 1024).upload_from_file(io.BytesIO(b"second"), if_generation_match=0)
    assert raw.blob(name).download_as_bytes() == b"second"


def test_uploads_of_every_kind_honour_generation_preconditions(cloud):
    bucket = _staging(cloud)
    name = f"probe/pre-{time.time_ns()}"
    bucket.blob(name).upload_from_string(b"a", if_generation_match=0)                       # multipart
    gen = bucket.get_blob(name).generation
    with pytest.raises(gexc.PreconditionFailed) as err:
        bucket.blob(name).upload_from_string(b"b", if_generation_match=0)
    assert "conditionNotMet" in str(err.value)
    with pytest.raises(gexc.PreconditionFailed):                                            # resumable, =0
        bucket.blob(name, chunk_size=256 * 1024).upload_from_file(io.BytesIO(b"c"), if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):                                            # resumable, =N wrong
        bucket.blob(name, chunk_size=256 * 1024).upload_from_file(io.BytesIO(b"c"), if_generation_match=gen + 1)
    with pytest.raises(gexc.PreconditionFailed):                                            # multipart, =N wrong
        bucket.blob(name).upload_from_string(b"c", if_generation_match=gen + 1)
    assert bucket.blob(name).download_as_bytes() == b"a"
    bucket.blob(name, chunk_size=256 * 1024).upload_from_file(io.BytesIO(b"d"), if_generation_match=gen)
    gen2 = bucket.get_blob(name).generation
    assert gen2 != gen and bucket.blob(name).download_as_bytes() == b"d"
    with pytest.raises(gexc.PreconditionFailed):                                            # delete, =N wrong
        bucket.blob(name).delete(if_generation_match=gen)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob(name).download_as_bytes(if_generation_match=gen)
    bucket.blob(name).delete(if_generation_match=gen2)
    assert bucket.get_blob(name) is None


def test_a_resumable_upload_is_checked_again_when_it_completes(cloud):
    """The session started while the object did not exist; another writer created it before the last chunk: the
    upload that completes is refused, and the other writer's object stays."""
    bucket = _staging(cloud)
    name = f"probe/late-{time.time_ns()}"
    session = bucket.blob(name).create_resumable_upload_session(if_generation_match=0)
    bucket.blob(name).upload_from_string(b"winner", if_generation_match=0)
    resp = requests.put(session, data=b"loser", headers={"Content-Range": "bytes 0-4/5"}, timeout=30)
    assert resp.status_code == 412 and "conditionNotMet" in resp.text
    assert bucket.blob(name).download_as_bytes() == b"winner"


def test_of_sixteen_concurrent_creates_one_wins(cloud):
    for trial in range(ROUNDS):
        name = f"probe/race-{time.time_ns()}"
        barrier, wins = threading.Barrier(16), []

        def create(i: int) -> None:
            blob = cloud.gcs.client().bucket(cloud.outputs.staging_bucket_name).blob(name)
            barrier.wait()
            try:
                blob.upload_from_string(str(i).encode(), if_generation_match=0)
                wins.append(i)
            except gexc.PreconditionFailed:
                pass
        threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(wins) == 1, trial
        assert _staging(cloud).blob(name).download_as_bytes() == str(wins[0]).encode()


# jobs.claim ---------------------------------------------------------------------------------------------------------

def test_a_stale_claim_is_taken_over_by_one_of_many(cloud, monkeypatch):
    from jobs import claim
    monkeypatch.setenv("HFGATE_CLAIM_LEASE_S", "2")
    key = f"probe/stale-{time.time_ns()}"
    dead = claim.Claim(_staging(cloud), key)
    assert dead.try_create()                   # claimed, never renewed, never finished: its owner is gone
    runs, outcomes, barrier = [], [], threading.Barrier(6)

    def take() -> None:
        bucket = _staging(cloud)
        barrier.wait()
        outcomes.append(claim.once(bucket, key, lambda: runs.append(1) or "the-result"))
    threads = [threading.Thread(target=take) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(runs) == 1 and len(outcomes) == 6
    assert {o.result for o in outcomes} == {"the-result"}
    assert [o.created for o in outcomes].count(True) == 1 and [o.taken_over for o in outcomes].count(True) == 1
    # A recorded result that no longer stands (a failed job) is superseded by one caller, the same way.
    runs.clear()
    outcomes.clear()
    barrier = threading.Barrier(4)

    def supersede() -> None:
        bucket = _staging(cloud)
        barrier.wait()
        outcomes.append(claim.once(bucket, key, lambda: runs.append(1) or "second",
                                   valid=lambda result: result != "the-result"))
    threads = [threading.Thread(target=supersede) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(runs) == 1 and {o.result for o in outcomes} == {"second"}


def test_a_waiter_gives_up_after_its_bound_and_says_what_to_do(cloud, monkeypatch):
    from jobs import claim
    from jobs.errors import Transient
    monkeypatch.setenv("HFGATE_CLAIM_LEASE_S", "30")
    key = f"probe/held-{time.time_ns()}"
    holder = claim.Claim(_staging(cloud), key)
    assert holder.try_create()
    lines: list[str] = []
    monkeypatch.setattr(claim, "PROGRESS_EVERY_S", 0.2)
    t0 = time.monotonic()
    with pytest.raises(Transient) as err:
        claim.once(_staging(cloud), key, lambda: "never", wait_s=1.0, progress=lines.append)
    assert 1.0 <= time.monotonic() - t0 < 10
    assert "taken over 30s after its last renewal" in err.value.fix and holder.owner in err.value.message
    assert lines and "waiting for" in lines[0]


def test_every_submitter_may_claim_in_its_own_staging_bucket(plans):
    """The claim's calls need object create, get and delete on the staging bucket: every environment's (and every
    team's) staging bucket grants the submitter a role holding them, on the bucket, and nothing grants it there
    on the project instead."""
    from jobs import claim
    from review.roles import PREDEFINED
    assert claim.PERMISSIONS <= PREDEFINED[claim.ROLE]
    for env, plan in plans.items():
        res = plan["resource"]
        staging = [k for k in res["google_storage_bucket"] if "staging-bucket" in k]
        assert staging, env
        grants = res.get("google_storage_bucket_iam_member", {}).values()
        for key in staging:
            held = [g for g in grants if g["bucket"] == f"${{google_storage_bucket.{key}.name}}"
                    and "submitter" in g["member"] and g["role"] == claim.ROLE]
            assert len(held) == 1, (env, key)


# submit -----------------------------------------------------------------------------------------------------------

@pytest.fixture
def alice(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])


def test_threads_at_a_barrier_submit_one_request_and_make_one_job(cloud, alice):
    from jobs import api
    with cloud.environ():
        outputs = api.load_outputs(str(cloud.state_dir / "outputs.json"))
        for trial in range(ROUNDS):
            request = api.TrainRequest(model=GATED, dataset=DATASET, max_steps=1, nonce=f"race-{time.time_ns()}")
            barrier, subs, errors = threading.Barrier(8), [], []

            def submit() -> None:
                barrier.wait()
                try:
                    subs.append(api.submit(outputs, request))
                except Exception as exc:       # reported below, with the trial
                    errors.append(repr(exc))
            threads = [threading.Thread(target=submit) for _ in range(8)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            assert not errors, (trial, errors)
            assert len({s.job for s in subs}) == 1 and len(subs) == 8
            assert [s.created for s in subs].count(True) == 1, trial
            assert [j.name for j in _jobs_of(cloud, subs[0].request_id)] == [subs[0].job], trial


RACER = r"""
import json, sys, time
from jobs import api
outputs = api.load_outputs()
model, dataset = sys.argv[1], sys.argv[2]
api.submit(outputs, api.TrainRequest(model=model, dataset=dataset, max_steps=1), dry_run=True)   # warm clients
print("ready", flush=True)
for line in sys.stdin:
    order = json.loads(line)
    time.sleep(max(0.0, order["start"] - time.time()))
    sub = api.submit(outputs, api.TrainRequest(model=model, dataset=dataset, max_steps=1, nonce=order["nonce"]))
    print(json.dumps({"job": sub.job, "created": sub.created, "rid": sub.request_id, "at": time.time()}),
          flush=True)
"""


def test_processes_released_at_one_start_time_make_one_job(cloud, alice):
    procs = [subprocess.Popen([sys.executable, "-c", RACER, GATED, DATASET], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, **cloud.env()}) for _ in range(4)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read() if p.poll() is not None else ""
        for trial in range(ROUNDS):
            order = json.dumps({"start": time.time() + 0.5, "nonce": f"procs-{time.time_ns()}"}) + "\n"
            for p in procs:
                p.stdin.write(order)
                p.stdin.flush()
            results = [json.loads(p.stdout.readline()) for p in procs]
            assert len({r["job"] for r in results}) == 1, (trial, results)
            assert [r["created"] for r in results].count(True) == 1, (trial, results)
            assert [j.name for j in _jobs_of(cloud, results[0]["rid"])] == [results[0]["job"]], trial
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(60)


def _new_claim(cloud, prefix: str, before: set[str], proc, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = {b.name for b in cloud.gcs.client().list_blobs(cloud.outputs.staging_bucket_name, prefix=prefix)}
        if names - before:
            return (names - before).pop()
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the submitter never claimed")


def test_a_submitter_killed_after_claiming_is_taken_over_after_the_lease_by_one_of_two(cloud, alice):
    args = ("submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "1", "--display-name",
            f"killed-{time.time_ns()}", "--json")
    before = {b.name for b in cloud.gcs.client().list_blobs(cloud.outputs.staging_bucket_name,
                                                            prefix="hfgate-claims/jobs/")}
    lease = {"HFGATE_CLAIM_LEASE_S": "4"}
    env = {**os.environ, **cloud.env(), **lease}
    victim = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env={**env,
                              "HFGATE_CLAIM_HOLD_S": "600"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    claim_name = _new_claim(cloud, "hfgate-claims/jobs/", before, victim)
    rid = claim_name.rsplit("/", 1)[-1]
    victim.send_signal(signal.SIGKILL)           # between its claim and its create: a real kill
    victim.wait(10)
    assert _jobs_of(cloud, rid) == []
    t0 = time.monotonic()
    takers = [subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [t.communicate(timeout=120) for t in takers]
    assert [t.returncode for t in takers] == [0, 0], [o[1][-2000:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert time.monotonic() - t0 < 60
    assert len({r["job"] for r in results}) == 1 and [r["created"] for r in results].count(True) == 1
    assert [j.name for j in _jobs_of(cloud, rid)] == [results[0]["job"]]
    assert sum("took over request" in o[1] for o in outs) == 1
    record = json.loads(_staging(cloud).blob(claim_name).download_as_bytes())
    assert record["result"] == results[0]["job"]


# mirrors ----------------------------------------------------------------------------------------------------------

def _own_repo(cloud) -> str:
    source = cloud.hub_state.repos["hfgate-demo/tiny-open-lm"]
    repo = f"hfgate-demo/claim-{time.time_ns()}"
    cloud.hub_state.add_repo(repo, dict(source.commits[source.refs["main"]]))
    return repo


MIRROR_RACER = r"""
import json, sys, threading
from jobs import api
outputs = api.load_outputs()
for repo in sys.argv[1:]:
    barrier, results = threading.Barrier(4), []
    def mirror():
        barrier.wait()
        try:
            r = api.mirror(outputs, repo)
            results.append({"uri": r.uri, "uploaded": r.uploaded})
        except Exception as exc:
            results.append({"error": repr(exc)})
    threads = [threading.Thread(target=mirror) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(results), flush=True)
"""


def test_threads_mirroring_one_commit_upload_it_once(cloud, alice):
    repos = [_own_repo(cloud) for _ in range(2)]
    proc = subprocess.run([sys.executable, "-c", MIRROR_RACER, *repos], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **cloud.env()}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for trial, line in enumerate(proc.stdout.splitlines()):
        results = json.loads(line)
        assert not [r for r in results if "error" in r], results
        assert len({r["uri"] for r in results}) == 1 and len(results) == 4
        assert [r["uploaded"] > 0 for r in results].count(True) == 1, (trial, results)
    assert len(proc.stdout.splitlines()) == len(repos)


def test_a_mirror_killed_after_claiming_is_taken_over(cloud, alice):
    repo = _own_repo(cloud)
    before = {b.name for b in cloud.gcs.client().list_blobs(cloud.outputs.staging_bucket_name,
                                                            prefix="hfgate-claims/mirrors/")}
    env = {**os.environ, **cloud.env(), "HFGATE_CLAIM_LEASE_S": "2"}
    victim = subprocess.Popen([sys.executable, "-m", "jobs.cli", "mirror", "--model", repo], cwd=ROOT,
                              env={**env, "HFGATE_CLAIM_HOLD_S": "600"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    claim_name = _new_claim(cloud, "hfgate-claims/mirrors/", before, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    proc = hfgate(cloud, "mirror", "--model", repo, "--json", extra_env={"HFGATE_CLAIM_LEASE_S": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["uploaded"] > 0 and "took over the mirror" in proc.stderr
    assert json.loads(_staging(cloud).blob(claim_name).download_as_bytes())["result"] == json.loads(proc.stdout)["uri"]


def test_a_request_whose_job_failed_can_be_submitted_again(cloud, alice):
    """The claim records the failed job; the next identical submit supersedes it and makes a new job."""
    from tests.test_submit import wait_done
    commit = cloud.hub_state.repos[GATED].refs["main"]      # pinned: the request is the same one both times
    args = ("submit", "--model", GATED, "--revision", commit, "--dataset", DATASET, "--max-steps", "1",
            "--display-name", f"again-{time.time_ns()}", "--json", "--", "--probe_crash")
    first = hfgate(cloud, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    job = json.loads(first.stdout)["job"]
    assert wait_done(cloud, job.rsplit("/", 1)[-1]).state.name == "JOB_STATE_FAILED"
    second = hfgate(cloud, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    again = json.loads(second.stdout)
    assert again["created"] is True and again["job"] != job
    assert again["request_id"] == json.loads(first.stdout)["request_id"], (first.stdout, second.stdout)


def test_a_claim_naming_another_job_is_not_followed(cloud, alice):
    """Whoever may write the staging bucket could record any job in a request's claim: a submit follows a recorded
    job only if it is this request's (its id label and the spec hfgate built, in the team's project, as its
    trainer); otherwise it supersedes the claim and creates its own."""
    from jobs import api, claim
    with cloud.environ():
        outputs = api.load_outputs(str(cloud.state_dir / "outputs.json"))
        other = api.submit(outputs, api.TrainRequest(model=GATED, dataset=DATASET, max_steps=1,
                                                     nonce=f"other-{time.time_ns()}"))
        request = api.TrainRequest(model=GATED, dataset=DATASET, max_steps=1, nonce=f"forged-{time.time_ns()}")
        rid = api.submit(outputs, request, dry_run=True).request_id
        forged = claim.Claim(_staging(cloud), f"jobs/{rid}")
        assert forged._write(forged._doc(other.job), 0)
        sub = api.submit(outputs, request)
    assert sub.created is True and sub.job != other.job
    assert [j.name for j in _jobs_of(cloud, rid)] == [sub.job]

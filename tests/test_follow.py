"""Long jobs: following a chatty job reads Cloud Logging incrementally, within the project's read quota, and sees
every line exactly once, even when the quota is exhausted by others and reads are throttled."""
from __future__ import annotations

import json
import time

from jobs import api
from tests.conftest import hfgate, set_token
from tests.test_submit import DATASET, GATED

LINES, SECONDS = 3000, 20


def _start_chatty_job(cloud, lines: int = LINES, seconds: float = SECONDS) -> str:
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--force-new", "--json", "--",
                  "--probe_lines", str(lines), "--probe_seconds", str(seconds))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["job"]


def _follow(outputs, job, sink, followers):
    from jobs import vertex as submit
    original = submit.LogFollower

    class Counting(original):           # the production follower, counted: how many reads it sent
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            followers.append(self)
    submit.LogFollower = Counting
    try:
        for event in api.follow(outputs, job):
            if isinstance(event, api.LogLine):
                sink.append(event.text)
    finally:
        submit.LogFollower = original


def test_following_a_chatty_job_stays_within_the_read_quota_and_loses_nothing(cloud):
    with cloud.environ():
        job = _start_chatty_job(cloud)
        reads_before, throttled_before = len(cloud.logging_reads), cloud.logging_throttled
        t0 = time.monotonic()
        lines, followers = [], []
        _follow(cloud.outputs, job, lines, followers)
        elapsed = time.monotonic() - t0
    probe = [line for line in lines if line.startswith("probe line ")]
    assert probe == [f"probe line {i:06d}" for i in range(LINES)]            # each once, in order
    reads = len(cloud.logging_reads) - reads_before
    assert cloud.logging_throttled == throttled_before                       # never over the quota
    assert reads == followers[0].requests and reads <= elapsed / 5 + 2        # one read per 5 s on average
    assert followers[0].throttled == 0


def test_a_throttled_follower_backs_off_and_still_loses_nothing(cloud):
    """Someone else uses up the project's read quota: the follower gets 429s, backs off, and once reads go
    through again it still sees every line once."""
    quota, window = cloud.logging_read_quota_per_min, cloud.logging_window_s
    # The project's quota, scaled down in time: 8 reads per 10 s window (the real one is per minute; the knob keeps
    # the test from waiting out whole minutes), the follower's own pacing unchanged.
    cloud.logging_read_quota_per_min, cloud.logging_window_s = 8, 10.0
    try:
        with cloud.environ():
            job = _start_chatty_job(cloud, lines=1500, seconds=15)
            with cloud.logging_lock:     # others in the project have just used this window's 8 reads
                cloud.logging_reads.extend([time.time() + 2] * 8)
            lines, followers = [], []
            _follow(cloud.outputs, job, lines, followers)
    finally:
        cloud.logging_read_quota_per_min, cloud.logging_window_s = quota, window
    probe = [line for line in lines if line.startswith("probe line ")]
    assert probe == [f"probe line {i:06d}" for i in range(1500)]
    assert followers[0].throttled > 0                                         # it was throttled, and went on


def test_a_job_that_ended_before_the_first_read_is_read_at_once_and_the_pace_still_holds():
    """The follower's pacing with a fake clock: the first read of a finished job is immediate (it is the only read),
    and a following read still waits its 5 s turn."""
    from jobs import vertex
    from stacks.config import load_settings
    from stacks.contract import outputs_from_settings

    class Response:
        status_code = 200

        def json(self):
            return {"entries": []}

    class Session:
        def post(self, *a, **kw):
            return Response()
    now, slept = [100.0], []
    follower = vertex.LogFollower("projects/1/locations/r/customJobs/7", outputs_from_settings(load_settings("sandbox"), "1"),
                                  session=Session(), clock=lambda: now[0],
                                  sleep=lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    assert follower.poll() == [] and follower.requests == 0          # not yet due
    follower.poll(final=True)
    assert follower.requests == 1 and slept == []                     # read at once
    follower.poll(final=True)
    assert follower.requests == 2 and slept == [vertex.LOG_INTERVAL_S]

"""Do something once per key, however many callers ask at the same moment: a claim object in the staging bucket.

Vertex AI's CreateCustomJob has no idempotency key, and listing jobs before creating one leaves a window in which
every concurrent submitter sees nothing and creates its own. Cloud Storage closes it: an object written with
`ifGenerationMatch=0` is created only if no live object has that name, and of concurrent such writes exactly one
succeeds; the others get 412 Precondition Failed [1]. Every write of an object gives it a new generation [2], so a
write with `ifGenerationMatch=<the generation I read>` succeeds only if nobody wrote it since: that is how a claim is
renewed, completed, released or taken over, each by one caller only.

| what this module relies on                                            | source |
|-----------------------------------------------------------------------|--------|
| `ifGenerationMatch=0`: the write proceeds only if there is no live object, else 412 | [1] |
| `ifGenerationMatch=N`: the write proceeds only if the live generation is N, else 412 | [1] |
| each write of an object's data creates a new generation number        | [2]    |
| Cloud Storage is strongly consistent for object writes and reads     | [3]    |

[1] https://cloud.google.com/storage/docs/request-preconditions
[2] https://cloud.google.com/storage/docs/metadata#generation-number
[3] https://cloud.google.com/storage/docs/consistency

What the caller (the submitter account) needs on the staging bucket, one row per call:

| call                                           | permissions                                       | source |
|------------------------------------------------|---------------------------------------------------|--------|
| claim (create, ifGenerationMatch=0)            | storage.objects.create                            | [4]    |
| read the claim                                 | storage.objects.get                               | [4]    |
| renew, record, take over (overwrite, =N)       | storage.objects.create, storage.objects.delete    | [4]    |
| release (delete, =N)                           | storage.objects.delete                            | [4]    |

roles/storage.objectUser holds all four [5]; the stacks grant it to the submitter on the staging bucket alone
(stacks/team.py), so no grant changes (roles/storage.objectCreator would not do: no get, no delete).

[4] https://cloud.google.com/storage/docs/access-control/iam-permissions (JSON API methods: objects insert,
    get, delete; overwriting an object also needs storage.objects.delete)
[5] https://cloud.google.com/storage/docs/access-control/iam-roles

The claim `hfgate-claims/<key>` holds who owns it and, once the work is done, its result (the job's name). The
owner renews it (a new generation) every third of the lease while it works. A caller that loses the race waits for
the result, reporting progress, up to `wait_s`; if the claim's generation stays the same for a whole lease with no
result (its owner died between claiming and finishing), one waiter takes it over (a write with that generation as
its precondition: of several waiters only one succeeds) and does the work itself, after asking `find` whether the
dead owner got as far as doing it. A recorded result that `valid` rejects (a job that failed or was cancelled) is
superseded the same way.

Guaranteed: concurrent callers with the same key, from threads or processes on any machines, do the work once while
the owner renews its claim, and all of them get its result. Not guaranteed: work done without a claim (a job created
outside hfgate, or by a version of hfgate without claims) is found only through `find`, with the window that listing
has; an owner that stops renewing for a whole lease (frozen, not dead) and then resumes may do the work a second time
(it checks its claim is still its own right before working, so the window is that one call).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from jobs.errors import AccessDenied, Transient

log = logging.getLogger("hfgate.claim")

PREFIX = "hfgate-claims/"
# The permissions the table above lists, and the role the stacks grant the submitter on the staging bucket.
PERMISSIONS = frozenset({"storage.objects.create", "storage.objects.get", "storage.objects.delete"})
ROLE = "roles/storage.objectUser"
# A claim whose generation has not changed for this long, with no result, is stale: its owner stopped renewing it
# (renewals come every LEASE_S / 3). HFGATE_CLAIM_LEASE_S changes it (tests shorten it).
LEASE_S = 60.0
# A claim last written this long before the reader's clock (beyond the lease) is stale at once, without watching it
# for a whole lease; the allowance covers clock skew between machines.
CLOCK_SKEW_S = 30.0
PROGRESS_EVERY_S = 5.0


def lease_s() -> float:
    return float(os.environ.get("HFGATE_CLAIM_LEASE_S") or LEASE_S)


@dataclass(frozen=True)
class Outcome:
    result: str
    created: bool          # this caller did the work (False: it found or waited for another's)
    taken_over: bool = False


class _Lost(Exception):
    """The claim stopped being ours (taken over after our lease ran out)."""


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _storage_errors():
    from google.api_core import exceptions as gexc
    return gexc


class Claim:
    """One claim object, as this caller holds it: writes carry the generation last written, so each succeeds only
    if nobody else wrote in between."""

    def __init__(self, bucket, key: str) -> None:
        self.bucket = bucket
        self.key = key
        self.name = PREFIX + key
        self.owner = _owner_id()
        self.generation: int | None = None
        self.lost = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # one conditional write ---------------------------------------------------------------------------------------
    def _write(self, doc: dict, if_generation_match: int) -> bool:
        """Write `doc` if the live generation is `if_generation_match` (0: no object). True if it is now ours."""
        gexc = _storage_errors()
        blob = self.bucket.blob(self.name)
        blob.metadata = {k: str(v) for k, v in doc.items()}
        try:
            blob.upload_from_string(json.dumps(doc), content_type="application/json",
                                    if_generation_match=if_generation_match)
        except gexc.PreconditionFailed:
            # A retried write whose first attempt landed also answers 412: ours if it carries our owner id.
            now = _read(self.bucket, self.name)
            if now is not None and (now.metadata or {}).get("owner") == self.owner and \
                    (now.metadata or {}).get("result", "") == doc.get("result", ""):
                self.generation = now.generation
                return True
            return False
        except gexc.Forbidden as exc:
            raise AccessDenied(f"Cloud Storage refused to write the claim gs://{self.bucket.name}/{self.name}"
                               f" ({exc.message})", "the submitter needs roles/storage.objectUser on the staging"
                               " bucket (the stacks grant it); submit as the submitter account") from None
        self.generation = blob.generation
        return True

    def _doc(self, result: str = "") -> dict:
        return {"hfgate_claim": 1, "key": self.key, "owner": self.owner, "result": result,
                "written_at": dt.datetime.now(dt.timezone.utc).isoformat()}

    def try_create(self) -> bool:
        return self._write(self._doc(), 0)

    def try_take_over(self, generation: int) -> bool:
        return self._write(self._doc(), generation)

    # while the owner works ---------------------------------------------------------------------------------------
    def _renew_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            with self._lock:
                if self._stop.is_set() or self.lost or self.generation is None:
                    return
                try:
                    if not self._write(self._doc(), self.generation):
                        self.lost = True
                        log.warning("the claim %s was taken over while this caller held it", self.name)
                        return
                except Exception as exc:           # a failed renewal is retried at the next tick
                    log.info("renewing the claim %s failed (%s); retrying", self.name, type(exc).__name__)

    def hold(self) -> None:
        """Renew the claim every third of the lease until finish/release."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, args=(lease_s() / 3,), daemon=True,
                                        name=f"claim-renew-{self.key}")
        self._thread.start()

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def check(self) -> None:
        """Raise _Lost unless the claim is still ours (right before doing the work)."""
        with self._lock:
            if self.lost:
                raise _Lost()
            now = _read(self.bucket, self.name)
            if now is None or now.generation != self.generation:
                self.lost = True
                raise _Lost()

    def finish(self, result: str) -> bool:
        """Record the result (only if the claim is still ours); False if it was taken over meanwhile."""
        self._stop_renewing()
        with self._lock:
            if self.lost or self.generation is None:
                return False
            return self._write(self._doc(result), self.generation)

    def release(self) -> None:
        """Give the claim up (the work failed): deleted only if still ours, so the next caller claims afresh."""
        self._stop_renewing()
        gexc = _storage_errors()
        with self._lock:
            if self.lost or self.generation is None:
                return
            try:
                self.bucket.blob(self.name).delete(if_generation_match=self.generation)
            except (gexc.PreconditionFailed, gexc.NotFound):
                pass
            except Exception as exc:    # it goes stale after the lease, and is taken over then
                log.info("releasing the claim %s failed (%s)", self.name, type(exc).__name__)


def _read(bucket, name: str):
    """The claim object (with its generation and metadata), or None."""
    gexc = _storage_errors()
    try:
        return bucket.get_blob(name)
    except gexc.Forbidden as exc:
        raise AccessDenied(f"Cloud Storage refused to read the claim gs://{bucket.name}/{name} ({exc.message})",
                           "the submitter needs roles/storage.objectUser on the staging bucket (the stacks grant"
                           " it); submit as the submitter account") from None


def _age_s(blob) -> float:
    updated = blob.updated or blob.time_created
    if updated is None:
        return 0.0
    return (dt.datetime.now(dt.timezone.utc) - updated).total_seconds()


def once(bucket, key: str, work: Callable[[], str], *, find: Callable[[], str | None] | None = None,
         valid: Callable[[str], bool] | None = None, wait_s: float | None = None,
         progress: Callable[[str], None] | None = None, what: str = "") -> Outcome:
    """`work()` run once for `key` among every caller using the same bucket and key, its result (a string: a job's
    name) recorded in the claim and returned to all. `find()` says whether it was already done without a claim
    (asked by whoever holds the claim, before working); `valid(result)` whether a recorded result still stands.
    Waits at most `wait_s` (default: three leases) for another caller, then raises Transient; `progress` receives
    a line every few seconds while waiting."""
    what = what or key
    wait_s = 3 * lease_s() if wait_s is None else wait_s
    say = progress or (lambda line: log.info("%s", line))
    t0 = time.monotonic()
    seen_generation, seen_at, said_at, pause = None, t0, t0, 0.05
    taken_over = False
    while True:
        claim = Claim(bucket, key)
        won = claim.try_create()
        if not won:
            current = _read(bucket, claim.name)
            if current is None:
                continue                              # released or deleted meanwhile: claim it afresh
            meta = current.metadata or {}
            result = meta.get("result", "")
            now = time.monotonic()
            if current.generation != seen_generation:
                seen_generation, seen_at = current.generation, now
            if result and (valid is None or valid(result)):
                return Outcome(result, False)
            stale = bool(result) or now - seen_at >= lease_s() or _age_s(current) >= lease_s() + CLOCK_SKEW_S
            if stale and claim.try_take_over(current.generation):
                won = taken_over = True
                say(f"took over {what}: " + (f"its recorded result {result} no longer stands" if result else
                                             f"its owner ({meta.get('owner', '?')}) stopped renewing it"))
            elif not stale:
                if now - t0 >= wait_s:
                    raise Transient(f"waited {now - t0:.0f}s for {what}, claimed by {meta.get('owner', '?')},"
                                    " without a result", f"try again; a claim nobody renews is taken over"
                                    f" {lease_s():.0f}s after its last renewal (gs://{bucket.name}/{claim.name})")
                if now - said_at >= max(PROGRESS_EVERY_S, min(60.0, (now - t0) / 10)):     # sparser as it goes
                    said_at = now
                    say(f"waiting for {what}: claimed by {meta.get('owner', '?')}, renewed {_age_s(current):.0f}s"
                        f" ago ({now - t0:.0f}s of at most {wait_s:.0f}s)")
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        if not won:
            continue
        claim.hold()
        try:
            done = find() if find is not None else None
            if done:
                claim.finish(done)
                return Outcome(done, False, taken_over)
            hold = float(os.environ.get("HFGATE_CLAIM_HOLD_S") or 0)
            if hold:                      # fault drills: the owner pauses between claiming and working
                time.sleep(hold)
            claim.check()
            result = work()
        except _Lost:
            claim.release()
            continue
        except BaseException:
            claim.release()
            raise
        if not claim.finish(result):
            log.warning("%s was done (%s), but the claim had been taken over meanwhile", what, result)
        return Outcome(result, True, taken_over)


__all__ = ["CLOCK_SKEW_S", "Claim", "LEASE_S", "Outcome", "PERMISSIONS", "PREFIX", "ROLE", "lease_s", "once"]

"""Send the built CustomJob: once per request id (a claim in the staging bucket, jobs.claim), retry transient
errors, follow the job."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from jobs import endpoints
from jobs.errors import AccessDenied, HfgateError, NotFound, Transient, UsageError
from stacks.contract import Outputs
from stacks.errors import EXIT_OTHER

log = logging.getLogger("hfgate.submit")
RETRIES = 4
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def spec_fingerprint(job_spec: dict) -> dict:
    """What decides what a job runs and as whom: identity, image, command, arguments, environment, machines,
    network and output folder. Two jobs with the same fingerprint run the same thing."""
    def pool(p: dict) -> dict:
        c = p.get("container_spec") or {}
        return {"machine_spec": p.get("machine_spec") or {}, "replica_count": int(p.get("replica_count") or 0),
                "image_uri": c.get("image_uri", ""), "command": list(c.get("command") or []),
                "args": list(c.get("args") or []),
                "env": sorted((e.get("name", ""), e.get("value", "")) for e in c.get("env") or [])}
    return {"service_account": job_spec.get("service_account", ""),
            "pools": [pool(p) for p in job_spec.get("worker_pool_specs") or []],
            "output": (job_spec.get("base_output_directory") or {}).get("output_uri_prefix", ""),
            "network_attachment": (job_spec.get("psc_interface_config") or {}).get("network_attachment", "")}


def _spec_of(job) -> dict:
    return json.loads(endpoints.vertex_custom_job().to_json(job, preserving_proto_field_name=True))["job_spec"]


def _parent(outputs: Outputs) -> str:
    return f"projects/{outputs.project_id}/locations/{outputs.region}"


def _retry(call, what: str):
    from google.api_core import exceptions as gexc
    delay = 0.25
    for attempt in range(RETRIES):
        try:
            return call()
        except (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.InternalServerError, gexc.DeadlineExceeded) as e:
            if attempt == RETRIES - 1:
                raise Transient(f"Vertex AI did not answer {what} after {RETRIES} tries ({e.message})",
                                "try again later; nothing was created twice (requests are deduplicated)") from None
            time.sleep(delay)
            delay *= 2


def of_team(job, outputs: Outputs) -> bool:
    """The job is this team's: in its project (Vertex AI names jobs by project number) and run as its trainer,
    two things only the team controls (its project's IAM, act-as on its trainer); never a name or a label, which
    anyone who may create jobs in the project can copy."""
    project = job.name.split("/")[1] if job.name.startswith("projects/") else ""
    in_project = project in {outputs.project_id, str(outputs.project_number)} if outputs.project_number else \
        project != ""          # a contract without the number: the listing's parent already is the team's project
    return in_project and job.job_spec.service_account == outputs.trainer_email


def team_jobs(outputs: Outputs, flt: str, what: str, client=None) -> list:
    """The team's jobs matching a ListCustomJobs filter (of_team: the listing is the project's)."""
    client = client or endpoints.vertex(outputs.region)
    jobs = _retry(lambda: list(client.list_custom_jobs(request={"parent": _parent(outputs), "filter": flt})), what)
    return [j for j in jobs if of_team(j, outputs)]


def _is_ours(job, rid: str, wanted: dict | None) -> bool:
    """A live job of this request: same request-id label and, since anyone who may create jobs can copy a label,
    the same spec as the one hfgate built. A look-alike is ignored (and logged), never followed."""
    if job.state.name in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED") or job.labels.get("hfgate-request-id") != rid:
        return False
    if wanted is not None and spec_fingerprint(_spec_of(job)) != wanted:
        log.warning("ignoring %s: it carries this request's id but not the spec hfgate built", job.name)
        return False
    return True


def find_existing(client, outputs: Outputs, rid: str, job_spec: dict | None = None):
    """A live job of this request found by listing (see _is_ours), or None."""
    resp = _retry(lambda: client.list_custom_jobs(request={"parent": _parent(outputs),
                                                          "filter": f'labels.hfgate-request-id="{rid}"'}),
                  "the duplicate check")
    wanted = spec_fingerprint(job_spec) if job_spec is not None else None
    for job in resp:
        if _is_ours(job, rid, wanted) and of_team(job, outputs):
            return job
    return None


CLAIM_KEY = "jobs/{rid}"      # the claim object of a request: gs://<staging bucket>/hfgate-claims/jobs/<request id>


def create(body: dict, outputs: Outputs, client=None, *, storage=None, progress=None):
    """Create the job once per request id, however many submit it at the same moment (threads, processes,
    machines): the caller that wins the request's claim (jobs.claim, an object in the staging bucket created with
    ifGenerationMatch=0) lists jobs with its id, creates the job if there is none and records its name in the claim;
    every other caller waits for that name and returns that job (created False). A job created outside hfgate with
    this request's id and spec is found by the listing, not by the claim."""
    from jobs import claim

    client = client or endpoints.vertex(outputs.region)
    rid = body["labels"]["hfgate-request-id"]
    job = endpoints.vertex_custom_job().from_json(json.dumps(body), ignore_unknown_fields=False)
    built_spec = _spec_of(job)
    wanted = spec_fingerprint(built_spec)
    seen: dict[str, object] = {}

    def find() -> str | None:
        existing = find_existing(client, outputs, rid, built_spec)
        if existing is not None:
            seen[existing.name] = existing
        return existing.name if existing is not None else None

    def valid(name: str) -> bool:
        try:
            current = get(name, outputs, client)
        except NotFound:
            return False
        seen[current.name] = current
        return of_team(current, outputs) and _is_ours(current, rid, wanted)

    def work() -> str:
        made = _create_job(client, outputs, job, rid, built_spec)
        seen[made.name] = made
        return made.name

    bucket = (storage or endpoints.storage(outputs.project_id)).bucket(outputs.staging_bucket_name)
    outcome = claim.once(bucket, CLAIM_KEY.format(rid=rid), work, find=find, valid=valid, progress=progress,
                         what=f"request {rid}")
    found = seen.get(outcome.result) or get(outcome.result, outputs, client)
    return found, outcome.created


def _create_job(client, outputs: Outputs, job, rid: str, built_spec: dict):
    """One CreateCustomJob, retried on transient errors; before a retry, a job the failed try may have created is
    looked for (a create that timed out may still have landed)."""
    from google.api_core import exceptions as gexc

    for attempt in range(RETRIES):
        if attempt:
            existing = find_existing(client, outputs, rid, built_spec)
            if existing is not None:
                return existing
        try:
            return client.create_custom_job(parent=_parent(outputs), custom_job=job)
        except gexc.PermissionDenied as exc:
            if "actAs" in (exc.message or ""):
                raise AccessDenied(f"you may not run jobs as {outputs.trainer_email}",
                                   f"grant roles/iam.serviceAccountUser on {outputs.trainer_email} to the submitter"
                                   f" (the stacks grant it to {outputs.submitter_email}; submit as that account)") \
                    from None
            raise AccessDenied(f"Vertex AI refused: {exc.message}",
                               f"the submitter needs roles/aiplatform.user on {outputs.project_id}") from None
        except gexc.ResourceExhausted as exc:
            raise HfgateError(f"quota exhausted: {exc.message}",
                              "request more GPU quota (IAM & Admin > Quotas, filter on the metric above), pick"
                              " another region or machine, or use --scheduling FLEX_START/SPOT",
                              exit_code=EXIT_OTHER) from None
        except gexc.InvalidArgument as exc:
            raise UsageError(f"Vertex AI rejected the job: {exc.message}",
                             "fix the option named above; `hfgate submit --dry-run` prints the request") from None
        except (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.InternalServerError, gexc.DeadlineExceeded):
            if attempt == RETRIES - 1:
                raise Transient("Vertex AI did not answer the create after several tries",
                                "try again: the request id makes the retry safe") from None
            time.sleep(0.25 * 2 ** attempt)
    raise Transient("Vertex AI did not answer", "try again")


def get(name: str, outputs: Outputs, client=None):
    from google.api_core import exceptions as gexc
    client = client or endpoints.vertex(outputs.region)
    if "/" not in name:
        name = f"{_parent(outputs)}/customJobs/{name}"
    try:
        job = _retry(lambda: client.get_custom_job(name=name), "the status call")
    except gexc.NotFound:
        raise NotFound(f"no job {name}", "list jobs with `hfgate status` or check --env") from None
    if not of_team(job, outputs):
        raise NotFound(f"no job {name} of {_team_text(outputs)}: it runs as {job.job_spec.service_account or '?'}"
                       f" in {job.name.split('/')[1]}, not as {outputs.trainer_email} in {outputs.project_id}",
                       "pass a job of your own team (or --team / HFGATE_OUTPUTS for the team it belongs to)")
    return job


def _team_text(outputs: Outputs) -> str:
    return f"team {outputs.team}" if outputs.team else f"env {outputs.env}"


def cancel(name: str, outputs: Outputs, client=None) -> None:
    """Ask Vertex AI to cancel a job. One that has already ended is a UsageError (exit 2) naming its state: Vertex
    refuses it (FAILED_PRECONDITION), and there is nothing left to stop."""
    from google.api_core import exceptions as gexc
    client = client or endpoints.vertex(outputs.region)
    job = get(name, outputs, client)
    if job.state.name not in TERMINAL:
        try:
            _retry(lambda: client.cancel_custom_job(name=job.name), "the cancel")
            return
        except gexc.FailedPrecondition:      # it ended between the two calls
            job = get(job.name, outputs, client)
    state = job.state.name.removeprefix("JOB_STATE_")
    raise UsageError(f"job {job.name.rsplit('/', 1)[-1]} has already ended ({state}): there is nothing to cancel",
                     f"see how it ended with `hfgate status {job.name.rsplit('/', 1)[-1]}`; to run it again, submit"
                     " again (with --force-new for the same request)")


# Cloud Logging's read quota is per project (an initial 60 entries:list per minute, shared by everyone following
# jobs there): a follower asks at most once per LOG_INTERVAL_S on average, and backs off on 429.
LOG_INTERVAL_S = 5.0
LOG_BACKOFF_MAX_S = 60.0
LOG_FINAL_TRIES = 12          # the last read of a finished job: up to ~10 minutes of back-off, then Transient
LOG_PAGE_SIZE = 1000


@dataclass(frozen=True)
class LogEntry:
    timestamp: str
    insert_id: str
    text: str
    replica: str = ""        # Vertex AI's resource.labels.task_name: workerpool0-0 (the chief), workerpool1-N...


def _ts_key(ts: str) -> tuple[str, str]:
    """RFC 3339 timestamps of any fractional precision, comparable: (seconds part, nanoseconds padded)."""
    head, _, frac = ts.rstrip("Z").partition(".")
    return head, (frac + "000000000")[:9]


CHIEF = "workerpool0-0"     # the first replica of the first pool: rank 0, the one that logs training steps


class LogFollower:
    """Cloud Logging `entries:list` for one job, incrementally: a timestamp cursor (`timestamp >= cursor`, ordered
    ascending) with the insertIds already seen at the cursor's timestamp skipped, so no line is lost or repeated;
    at most one request per `min_interval_s` (pages of one read included) and exponential back-off on 429 or 5xx,
    never giving up while the job runs. `requests` counts what was sent."""

    def __init__(self, job_name: str, outputs: Outputs, min_interval_s: float = LOG_INTERVAL_S, session=None,
                 clock=time.monotonic, sleep=time.sleep, replica: str | None = CHIEF,
                 contains: str | None = None) -> None:
        self.job_id = job_name.rsplit("/", 1)[-1]
        self.contains = contains             # only lines holding this text (Cloud Logging's `:` operator)
        self.replica = replica               # one replica's lines (the chief by default), or None: every one
        self.outputs = outputs
        self.min_interval_s = min_interval_s
        self._session = session
        self.clock, self.sleep = clock, sleep
        self.cursor = ""
        self.at_cursor: set[str] = set()
        self.next_at = clock() + min_interval_s     # one read per interval, the first one interval in
        self.backoff = min_interval_s or 1.0
        self.requests = 0
        self.throttled = 0

    def _session_(self):
        if self._session is None:
            import google.auth.transport.requests
            self._session = google.auth.transport.requests.AuthorizedSession(endpoints.credentials())
        return self._session

    def _filter(self) -> str:
        flt = f'resource.type="ml_job" AND resource.labels.job_id="{self.job_id}"'
        if self.replica:
            flt += f' AND resource.labels.task_name="{self.replica}"'
        if self.contains:
            flt += ' AND textPayload:"' + self.contains.replace('\\', '\\\\').replace('"', '\\"') + '"'
        return flt + (f' AND timestamp>="{self.cursor}"' if self.cursor else "")

    def _list(self, flt: str, page_token: str | None):
        body = {"resourceNames": [f"projects/{self.outputs.project_id}"], "orderBy": "timestamp asc",
                "pageSize": LOG_PAGE_SIZE, "filter": flt}
        if page_token:
            body["pageToken"] = page_token
        self.requests += 1
        return self._session_().post(f"{endpoints.googleapis_rest('logging')}/v2/entries:list", json=body, timeout=30)

    def _take(self, entries: list[dict]) -> list[LogEntry]:
        out = []
        for e in entries:
            ts, iid = e.get("timestamp", ""), e.get("insertId", "")
            key, cur = _ts_key(ts), _ts_key(self.cursor) if self.cursor else None
            if cur is not None and (key < cur or (key == cur and iid in self.at_cursor)):
                continue
            if cur is None or key > cur:
                self.cursor, self.at_cursor = ts, set()
            self.at_cursor.add(iid)
            out.append(LogEntry(ts, iid, e.get("textPayload") or json.dumps(e.get("jsonPayload") or {}),
                                ((e.get("resource") or {}).get("labels") or {}).get("task_name", "")))
        return out

    def poll(self, final: bool = False) -> list[LogEntry]:
        """New entries since the last poll. Not yet due: [] (unless `final`, which waits its turn, or reads at once
        when nothing was read yet, and retries a throttled read until it gets through: the last lines of a finished
        job are not dropped)."""
        now = self.clock()
        if now < self.next_at:
            if not final:
                return []
            if self.requests:      # a job that ended before the first read is read at once: still one read
                self.sleep(self.next_at - now)
        # One filter for every page of this read: a page token belongs to the query that made it.
        out, page_token, tries, flt = [], None, 0, self._filter()
        while True:
            resp = self._list(flt, page_token)
            self.next_at = self.clock() + self.min_interval_s
            if resp.status_code in (429, 500, 502, 503, 504):
                self.throttled += 1
                self.next_at = self.clock() + self.backoff
                log.info("Cloud Logging answered %s; next read in %.0fs", resp.status_code, self.backoff)
                self.backoff = min(self.backoff * 2, LOG_BACKOFF_MAX_S)
                tries += 1
                if not final:
                    return out
                if tries >= LOG_FINAL_TRIES:
                    raise Transient(f"Cloud Logging kept refusing reads ({resp.status_code}) after the job ended",
                                    "the job's state is final; read its logs later with `hfgate logs JOB`")
                self.sleep(max(0.0, self.next_at - self.clock()))
                continue
            if resp.status_code in (401, 403):
                raise AccessDenied(f"Cloud Logging refused to list the job's logs ({resp.status_code})",
                                   "the caller needs roles/logging.viewer on the project")
            if resp.status_code != 200:
                raise Transient(f"Cloud Logging answered {resp.status_code}", "try `hfgate logs` again")
            self.backoff = self.min_interval_s or 1.0
            data = resp.json()
            out += self._take(data.get("entries", []))
            page_token = data.get("nextPageToken")
            if not page_token:
                return out
            if self.min_interval_s:      # the next page is a request too: keep to the rate
                self.sleep(max(0.0, self.next_at - self.clock()))

"""Send the built CustomJob: dedupe by request id (and spec), retry transient errors, follow the job."""
from __future__ import annotations

import json
import logging
import sys
import time

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
    from google.cloud.aiplatform_v1 import types as ai
    return json.loads(ai.CustomJob.to_json(job, preserving_proto_field_name=True))["job_spec"]


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


def find_existing(client, outputs: Outputs, rid: str, job_spec: dict | None = None):
    """A live job of this request: same request-id label and, since anyone who may create jobs can copy a label,
    the same spec as the one hfgate built. A look-alike is ignored (and logged), never followed."""
    resp = _retry(lambda: client.list_custom_jobs(request={"parent": _parent(outputs),
                                                          "filter": f'labels.hfgate-request-id="{rid}"'}),
                  "the duplicate check")
    wanted = spec_fingerprint(job_spec) if job_spec is not None else None
    for job in resp:
        if job.state.name in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED") or job.labels.get("hfgate-request-id") != rid:
            continue
        if wanted is not None and spec_fingerprint(_spec_of(job)) != wanted:
            log.warning("ignoring %s: it carries this request's id but not the spec hfgate built", job.name)
            continue
        return job
    return None


def create(body: dict, outputs: Outputs, client=None):
    """Create the job once: a retried or repeated submit finds the first job by its request id."""
    from google.api_core import exceptions as gexc
    from google.cloud.aiplatform_v1 import types as ai

    client = client or endpoints.vertex(outputs.region)
    rid = body["labels"]["hfgate-request-id"]
    job = ai.CustomJob.from_json(json.dumps(body), ignore_unknown_fields=False)
    built_spec = _spec_of(job)
    for attempt in range(RETRIES):
        existing = find_existing(client, outputs, rid, built_spec)
        if existing is not None:
            return existing, False
        try:
            return client.create_custom_job(parent=_parent(outputs), custom_job=job), True
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
        return _retry(lambda: client.get_custom_job(name=name), "the status call")
    except gexc.NotFound:
        raise NotFound(f"no job {name}", "list jobs with `hfgate status` or check --env") from None


def cancel(name: str, outputs: Outputs, client=None) -> None:
    client = client or endpoints.vertex(outputs.region)
    job = get(name, outputs, client)
    _retry(lambda: client.cancel_custom_job(name=job.name), "the cancel")


def logs(job_name: str, outputs: Outputs, page_token: str | None = None) -> tuple[list[str], str | None]:
    """Cloud Logging `entries:list` for the job (REST), one page."""
    import google.auth.transport.requests
    session = google.auth.transport.requests.AuthorizedSession(endpoints.credentials())
    job_id = job_name.rsplit("/", 1)[-1]
    body = {"resourceNames": [f"projects/{outputs.project_id}"], "orderBy": "timestamp asc", "pageSize": 1000,
            "filter": f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'}
    if page_token:
        body["pageToken"] = page_token
    resp = session.post(f"{endpoints.googleapis_rest('logging')}/v2/entries:list", json=body, timeout=30)
    if resp.status_code != 200:
        raise Transient(f"Cloud Logging answered {resp.status_code}", "try `hfgate logs` again")
    data = resp.json()
    return [e.get("textPayload", "") for e in data.get("entries", [])], data.get("nextPageToken")


def wait(job, outputs: Outputs, client=None, out=sys.stderr, poll_s: float = 1.0, timeout_s: float | None = None):
    """Follow the job: state changes and new log lines, until a terminal state."""
    client = client or endpoints.vertex(outputs.region)
    seen, last_state, t0 = 0, None, time.time()
    while True:
        job = get(job.name, outputs, client)
        state = job.state.name
        if state != last_state:
            print(f"[{time.time() - t0:6.1f}s] {state.removeprefix('JOB_STATE_')}", file=out, flush=True)
            last_state = state
        lines = []
        token = None
        while True:
            page, token = logs(job.name, outputs, token)
            lines += page
            if not token:
                break
        for line in lines[seen:]:
            print(f"  | {line}", file=out, flush=True)
        seen = len(lines)
        if state in TERMINAL:
            return job
        if timeout_s and time.time() - t0 > timeout_s:
            raise Transient(f"job still {state} after {timeout_s:.0f}s", "follow it with `hfgate status`")
        time.sleep(poll_s)

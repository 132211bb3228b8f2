"""hfgate from Python: everything the CLI does, as functions that take the outputs contract (or an environment name)
and typed options, return typed results, raise the typed errors the CLI maps to exit codes, and print nothing.

    from jobs import api
    outputs = api.load_outputs("dev", team="research")     # outputs/dev.json (dev has teams), a path, an Outputs
    report = api.check(outputs, "google/txgemma-2b-predict")
    job = api.submit(outputs, api.TrainRequest(model="google/txgemma-2b-predict", dataset="org/chat", max_steps=100))
    for event in api.follow(outputs, job.job):              # state changes and log lines until the job ends
        print(event)

Errors: `HfgateError` and its subclasses (`UsageError` 2, `TokenError` 3, `AccessDenied` 4, `NotFound` 5,
`Transient` 6, `PreflightFailed` with the report attached); each carries `.message`, `.fix` and `.exit_code`.
Library debug switches that would print the token are turned off on first use (jobs.redact).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Union

from jobs.errors import AccessDenied, HfgateError, NotFound, TokenError, Transient, UsageError
from jobs.jobspec import Scheduling, TokenDelivery, TrainRequest
from jobs.lifecycle import SetResult
from jobs.preflight import Report
from jobs.progress import Progress
from jobs.publish import PublishResult
from jobs.token import HfToken
from stacks.contract import Outputs, OutputsError
from stacks.contract import load_outputs as _load_outputs_file

__all__ = ["AccessDenied", "Backend", "HfToken", "HfgateError", "JobStatus", "LogLine", "MirrorResult", "NotFound",
           "Progress",
           "Outputs", "PreflightFailed", "Report", "Scheduling", "SetResult", "StateChange", "Submission", "TokenDelivery",
           "TokenError", "TrainRequest", "Transient", "UsageError", "cancel", "check", "follow", "load_outputs",
           "logs", "mirror", "publish", "PublishResult", "review_live", "set_token", "status", "submit", "token_status",
           "wait"]

OutputsLike = Union[Outputs, str, os.PathLike]
TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
HF_TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")


class Backend(str, Enum):
    VERTEX = "vertex"
    HF_JOBS = "hf-jobs"


class PreflightFailed(HfgateError):
    """The preflight refused: nothing was created. `.report` holds every check with its fix."""

    def __init__(self, report: Report) -> None:
        failed = [c for c in report.checks if c.status == "fail"]
        super().__init__("; ".join(c.detail for c in failed) or "preflight failed",
                         failed[0].fix if failed else "", exit_code=report.exit_code)
        self.report = report


@dataclass(frozen=True)
class Submission:
    backend: str
    job: str                         # full resource name (Vertex) or job id (HF Jobs); "" for a dry run
    state: str
    created: bool                    # False when the same request was found running (or for a dry run)
    request_id: str
    token_version: str | None
    token_fingerprint: str | None
    delivery: str
    preflight: Report | None = None
    request: dict | None = None      # the exact request (token-free); always set for a dry run
    warnings: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()    # mirror folders the job trains from (delivery "mirror")
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    job: str
    display_name: str
    state: str
    labels: dict
    error: str | None
    progress: Progress | None = None     # latest step, loss, samples/s, elapsed and ETA (from the chief's logs)


@dataclass(frozen=True)
class StateChange:
    state: str
    elapsed_s: float


@dataclass(frozen=True)
class LogLine:
    text: str
    timestamp: str = ""
    replica: str = ""        # the Vertex AI task that wrote it: workerpool0-0 (the chief), workerpool1-N...


@dataclass(frozen=True)
class MirrorResult:
    uri: str
    commit: str
    files: int
    bytes: int
    uploaded: int
    preflight: Report | None = None


_hardened = False


def _harden() -> None:
    global _hardened
    if not _hardened:
        from jobs.redact import harden
        harden()
        _hardened = True


def load_outputs(env_or_path: OutputsLike | None = None, *, env: str | None = None,
                 team: str | None = None) -> Outputs:
    """The outputs contract: an `Outputs` as is; a path; an environment name (outputs/<env>.json, or
    $HFGATE_OUTPUTS when set); with nothing given, $HFGATE_OUTPUTS. In an environment with teams, `team` (else
    $HFGATE_TEAM) picks the team's contract; every function below takes the result."""
    if isinstance(env_or_path, Outputs):
        if team is not None and env_or_path.team != team:
            raise OutputsError(f"these outputs are team {env_or_path.team!r}'s, not {team!r}",
                               "load the team's own: api.load_outputs(ENV, team=NAME)")
        return env_or_path
    team = team or os.environ.get("HFGATE_TEAM") or None
    if env_or_path is None and env is None and not os.environ.get("HFGATE_OUTPUTS"):
        raise OutputsError("no outputs contract given",
                           "pass an environment name or an outputs file; produce it with `make deploy ENV=...`"
                           " or `make output ENV=...`")
    text = str(env_or_path) if env_or_path is not None else None
    if text is not None and (text.endswith(".json") or os.sep in text or Path(text).exists()):
        return _load_outputs_file(Path(text), env=env, team=team)
    name = env or text
    path = os.environ.get("HFGATE_OUTPUTS") or f"outputs/{name}.json"
    return _load_outputs_file(Path(path), env=name, team=team)


def check(outputs: OutputsLike, model: str, revision: str = "main", *, token_version: str = "latest") -> Report:
    """The preflight of the stored token against a model: a Report (`.ok`, `.exit_code`, `.checks`, `.table()`).
    Does not raise on a failed check: inspect `.ok`."""
    from jobs.preflight import preflight
    from jobs.secret import read_token
    from jobs.allowlist import allowlist_check
    _harden()
    outputs = load_outputs(outputs)
    listed = allowlist_check(outputs, model, revision, "model")
    if listed is not None and listed.status == "fail":
        return Report(model, revision, [listed])
    pinned = read_token(outputs, token_version)
    report = preflight(pinned.token, model, revision)
    if listed is not None:
        report.checks.insert(0, listed)
    return report


def _preflight_or_raise(token: HfToken, repo_id: str, revision: str) -> Report:
    from jobs.preflight import preflight
    report = preflight(token, repo_id, revision)
    if not report.ok:
        raise PreflightFailed(report)
    return report


def submit(outputs: OutputsLike, request: TrainRequest, *, token_version: str = "latest", dry_run: bool = False,
           backend: Backend | str = Backend.VERTEX, flavor: str | None = None,
           namespace: str | None = None, progress: Callable[[str], None] | None = None) -> Submission:
    """Read the pinned token, preflight, build the job and create it once (a repeated request finds the first).
    Identical submits at the same moment, from threads or processes, make one job: one wins the request's claim
    (jobs.claim) and creates it, the others wait for it (`progress` gets a line every few seconds while waiting)
    and return it with `created` False. Raises PreflightFailed (with the report) when the preflight refuses;
    nothing is created then."""
    from jobs.allowlist import allowlist_report
    _harden()
    outputs = load_outputs(outputs)
    refused = allowlist_report(outputs, request.model, request.revision, request.dataset)
    if refused is not None:
        raise PreflightFailed(refused)
    if Backend(backend) is Backend.HF_JOBS:
        return _submit_hf_jobs(outputs, request, token_version, dry_run, flavor, namespace)
    if outputs.team and request.token_delivery is TokenDelivery.ENV:
        raise UsageError("--token-delivery env is refused in an environment with teams: the token would sit in the"
                         " job's spec, which every team's submitter may read (Vertex AI has no per-job IAM)",
                         "drop --token-delivery (secret-ref, the default, reads the token inside the job)")
    from stacks.facts import image_problem
    untrusted = image_problem(request.image or outputs.training_image, outputs.trusted_image_registries)
    if untrusted:
        raise AccessDenied(untrusted, "pin it by digest (--image REGISTRY/NAME@sha256:<digest>) or use an image from"
                           " trusted_image_registries in config/<env>.toml; nothing was read or created")
    from jobs import vertex
    from jobs.jobspec import build_custom_job
    from jobs.secret import read_token

    warnings: list[str] = []
    model_path = dataset_path = mirror_checks = None
    mirrors: tuple[str, ...] = ()
    report = None
    if request.token_delivery is TokenDelivery.MIRROR:
        from jobs.mirrors import prefix_for, require_mirror, resolve_commit
        pinned = read_token(outputs, token_version)   # resolves revisions to commits; never sent to the job
        mirror_checks, paths = [], []
        for repo_id, revision, repo_type in ((request.model, request.revision, "model"),
                                             (request.dataset, "main", "dataset")):
            commit = resolve_commit(pinned.token, repo_id, revision, repo_type)
            _, digest = require_mirror(outputs, repo_id, commit, repo_type, token=pinned.token)
            path = f"/gcs/{outputs.mirror_bucket_name}/{prefix_for(repo_id, commit, repo_type)}".rstrip("/")
            mirror_checks.append({"dir": path, "manifest_sha256": digest})
            paths.append(path)
        model_path, dataset_path = paths
        mirrors = tuple(paths)
        version_name, fingerprint, token_value = "", "", None
    else:
        pinned = read_token(outputs, token_version)
        report = _preflight_or_raise(pinned.token, request.model, request.revision)
        if request.token_delivery is TokenDelivery.ENV:
            warnings.append("--token-delivery env puts HF_TOKEN in the job spec: anyone with"
                            " aiplatform.customJobs.get can read it. Prefer the default secret-ref.")
        version_name, fingerprint = pinned.version_name, pinned.token.fingerprint
        token_value = pinned.token.reveal() if request.token_delivery is TokenDelivery.ENV else None
    body = build_custom_job(request, outputs, token_version=version_name, token_fingerprint=fingerprint,
                            hf_token_value=token_value, model_path=model_path, dataset_path=dataset_path,
                            mirror_checks=mirror_checks, model_commit=report.commit if report else None)
    shown = json.loads(json.dumps(body))
    for pool in shown["job_spec"]["worker_pool_specs"]:
        for e in pool["container_spec"]["env"]:
            if e["name"] == "HF_TOKEN":
                e["value"] = f"<redacted sha256:{fingerprint}>"
    request_doc = {"parent": f"projects/{outputs.project_id}/locations/{outputs.region}", "custom_job": shown}
    common: dict[str, Any] = dict(backend=Backend.VERTEX.value, request_id=body["labels"]["hfgate-request-id"],
                  token_version=version_name or None, token_fingerprint=fingerprint or None,
                  delivery=request.token_delivery.value, preflight=report, request=request_doc,
                  warnings=tuple(warnings), mirrors=mirrors)
    if dry_run:
        return Submission(job="", state="DRY_RUN", created=False, **common)
    job, created = vertex.create(body, outputs, progress=progress)
    return Submission(job=job.name, state=job.state.name, created=created, **common)


def _submit_hf_jobs(outputs: Outputs, request: TrainRequest, token_version: str, dry_run: bool,
                    flavor: str | None, namespace: str | None) -> Submission:
    from jobs import hfjobs
    from jobs.jobspec import IMAGE_TRL, label_value, machine_shape, trl_args
    from jobs.secret import read_token
    if request.token_delivery is not TokenDelivery.SECRET_REF:
        raise UsageError("--backend hf-jobs always passes the token as a Hugging Face Jobs secret",
                         "drop --token-delivery (secret-ref, env and mirror are Vertex AI options)")
    image = request.image or hfjobs.DEFAULT_IMAGE
    version = request.trl_version or IMAGE_TRL.get(image) or (1, 16)
    flavor = flavor or hfjobs.flavor_for(*machine_shape(request, outputs)[1:])
    command = hfjobs.trainer_command(trl_args(request, version, "/tmp/output", cpu=flavor.startswith("cpu")))
    pinned = read_token(outputs, token_version)
    report = _preflight_or_raise(pinned.token, request.model, request.revision)
    labels = {"managed-by": "hfgate", "hfgate-model": label_value(request.model),
              "hfgate-token-version": pinned.version, "hfgate-token-fp": pinned.token.fingerprint}
    ns = namespace or report.user
    doc = {"backend": Backend.HF_JOBS.value, "image": image, "command": command, "flavor": flavor, "namespace": ns,
           "secrets": ["HF_TOKEN"], "labels": labels, "timeout": request.timeout_s}
    common: dict[str, Any] = dict(backend=Backend.HF_JOBS.value, request_id="", token_version=pinned.version_name,
                  token_fingerprint=pinned.token.fingerprint, delivery=TokenDelivery.SECRET_REF.value,
                  preflight=report, request=doc, extra={"flavor": flavor, "namespace": ns})
    if dry_run:
        return Submission(job="", state="DRY_RUN", created=False, **common)
    info = hfjobs.run(pinned.token, command, image=image, flavor=flavor, namespace=ns, labels=labels,
                      timeout_s=request.timeout_s, env={"HF_HUB_DISABLE_TELEMETRY": "1", "TRL_USE_RICH": "0"})
    return Submission(job=info.id, state=info.status.stage, created=True, **common)


def follow(outputs: OutputsLike, job: str, *, poll_s: float = 1.0, timeout_s: float | None = None,
           backend: Backend | str = Backend.VERTEX, namespace: str | None = None,
           token_version: str = "latest", all_replicas: bool = False) -> Iterator[StateChange | LogLine | Progress]:
    """State changes, log lines and progress of a job until it ends. Vertex logs are read incrementally from Cloud
    Logging at a bounded rate (jobs.vertex.LogFollower): the chief's lines (workerpool0-0, the replica that logs
    training steps) by default, every replica's with `all_replicas` (each LogLine names its replica), in time
    order; a `Progress` follows each training step line. The job's state is polled every `poll_s`. Ends after the
    terminal state and the last log lines; raises Transient after `timeout_s`."""
    _harden()
    outputs = load_outputs(outputs)
    if Backend(backend) is Backend.HF_JOBS:
        from jobs import hfjobs
        from jobs.secret import read_token
        pinned = read_token(outputs, token_version)
        for kind, value, elapsed in hfjobs.follow(pinned.token, job, namespace, poll_s=poll_s,
                                                  timeout_s=timeout_s or 24 * 3600):
            yield StateChange(value, elapsed) if kind == "state" else LogLine(value)
        return
    from jobs import endpoints, vertex
    from jobs.progress import Tracker, spec_facts
    client = endpoints.vertex(outputs.region)
    current = vertex.get(job, outputs, client)
    follower = vertex.LogFollower(current.name, outputs, replica=None if all_replicas else vertex.CHIEF)
    tracker = Tracker(spec_facts(current))
    t0, last = time.monotonic(), None
    while True:
        current = vertex.get(current.name, outputs, client)
        state = current.state.name
        if tracker.started is None and current.start_time:
            tracker.started = current.start_time.timestamp()
        terminal = state in TERMINAL
        # The terminal state is yielded after the job's last lines: they happened before it (a short job is often
        # seen first when it has already ended).
        if state != last and not terminal:
            yield StateChange(state, round(time.monotonic() - t0, 1))
            last = state
        for entry in follower.poll(final=terminal):
            yield LogLine(entry.text, entry.timestamp, entry.replica)
            if entry.replica in (vertex.CHIEF, ""):
                progress = tracker.feed(entry.text, entry.timestamp)
                if progress is not None:
                    yield progress
        if terminal:
            if state != last:
                yield StateChange(state, round(time.monotonic() - t0, 1))
            return
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            raise Transient(f"job {current.name} still {state} after {timeout_s:.0f}s",
                            "keep following with `hfgate logs`, or cancel it")
        time.sleep(poll_s)


def wait(outputs: OutputsLike, job: str, **kw: Any) -> JobStatus:
    """Follow a job to its end (discarding the events) and return its final status."""
    for _ in follow(outputs, job, **kw):
        pass
    if Backend(kw.get("backend", Backend.VERTEX)) is Backend.HF_JOBS:
        return JobStatus(job=job, display_name="", state="", labels={}, error=None)
    return status(outputs, job)


def status(outputs: OutputsLike, job: str) -> JobStatus:
    """A job's state, error and, once it has trained a step, its progress (from the chief's step lines: one
    Cloud Logging read of those lines only)."""
    from jobs import vertex
    from jobs.progress import Tracker, spec_facts
    outputs = load_outputs(outputs)
    j = vertex.get(job, outputs)
    progress = None
    if j.start_time:
        tracker = Tracker(spec_facts(j), j.start_time.timestamp())
        reader = vertex.LogFollower(j.name, outputs, min_interval_s=0, contains="'loss'")
        for entry in reader.poll(final=True):
            tracker.feed(entry.text, entry.timestamp)
        progress = tracker.current()
    return JobStatus(job=j.name, display_name=j.display_name, state=j.state.name, labels=dict(j.labels),
                     error=j.error.message or None, progress=progress)


def logs(outputs: OutputsLike, job: str, *, all_replicas: bool = False) -> list[str]:
    """Every log line of a job so far (paged; one read, not a follow): the chief's, or with `all_replicas` every
    replica's, each prefixed with its replica (`[workerpool1-0] ...`), in time order."""
    from jobs import vertex
    outputs = load_outputs(outputs)
    j = vertex.get(job, outputs)
    entries = vertex.LogFollower(j.name, outputs, min_interval_s=0,
                                 replica=None if all_replicas else vertex.CHIEF).poll(final=True)
    return [f"[{e.replica or '-'}] {e.text}" if all_replicas else e.text for e in entries]


def cancel(outputs: OutputsLike, job: str) -> None:
    from jobs import vertex
    vertex.cancel(job, load_outputs(outputs))


def mirror(outputs: OutputsLike, repo_id: str, *, repo_type: str = "model", revision: str = "main",
           allow_pickle: bool = False, token_version: str = "latest",
           progress: Callable[[str], None] | None = None,
           on_preflight: Callable[[Report], None] | None = None) -> MirrorResult:
    """Copy a repo snapshot into the mirror bucket once, with a verified manifest. Models are preflighted first
    (PreflightFailed: nothing uploaded; `on_preflight` sees a passing report). `progress` receives one line per
    step."""
    from jobs import mirrors as mirror_mod
    from jobs.secret import _who, read_token
    _harden()
    if repo_type not in ("model", "dataset"):
        raise UsageError(f"repo_type {repo_type!r} is not model or dataset", "pass repo_type='model' or 'dataset'")
    outputs = load_outputs(outputs)
    from jobs.allowlist import allowlist_check
    listed = allowlist_check(outputs, repo_id, revision if repo_type == "model" else None, repo_type)
    if listed is not None and listed.status == "fail":
        raise PreflightFailed(Report(repo_id, revision, [listed]))
    pinned = read_token(outputs, token_version)
    report = _preflight_or_raise(pinned.token, repo_id, revision) if repo_type == "model" else None
    if report is not None and on_preflight is not None:
        on_preflight(report)
    sink = _LineSink(progress)
    result = mirror_mod.mirror(outputs, pinned.token, repo_id, revision, repo_type, allow_pickle=allow_pickle,
                               who=_who(), out=sink)
    return MirrorResult(uri=result.uri, commit=result.commit, files=result.files, bytes=result.bytes,
                        uploaded=result.uploaded, preflight=report)


class _LineSink:
    """A file-like for the mirror's progress lines: to a callback, or nowhere."""

    def __init__(self, callback: Callable[[str], None] | None) -> None:
        self.callback = callback

    def write(self, text: str) -> int:
        if self.callback:
            for line in text.splitlines():
                if line.strip():
                    self.callback(line)
        return len(text)

    def flush(self) -> None:
        pass


def publish(outputs: OutputsLike, job_or_run: str, repo_id: str, *, public: bool = False,
            confirm_base_terms: bool = False, license_id: str | None = None, token_version: str = "latest",
            progress: Callable[[str], None] | None = None, replace: bool = False) -> "PublishResult":
    """Upload a finished run (a job id or the run's name) to `repo_id` in one commit, with a model card, using the
    write token read as the publisher account (impersonated; the read token is never read). Private unless
    `public`; a gated base model's derivative goes public only with `confirm_base_terms`. Files of an earlier
    version in the repository are refused (UsageError naming them) unless `replace` (deleted in the same commit).
    Raises UsageError (bad repo id, job not SUCCEEDED, run incomplete, public derivative of a gated model, stale
    files, --public on an existing private repository), AccessDenied (not a publisher, read token, wrong
    organization), NotFound (no write token stored), Transient. Returns jobs.publish.PublishResult."""
    from jobs import publish as _publish
    _harden()
    return _publish.publish(load_outputs(outputs), job_or_run, repo_id, public=public,
                            confirm_base_terms=confirm_base_terms, license_id=license_id,
                            token_version=token_version, progress=progress, replace=replace)


def token_status(outputs: OutputsLike, kind: str | None = None) -> dict:
    """The read token: versions, which one `latest` is, the current token's owner and role, rotation due date, jobs
    per version; under "write", the write token's versions. `kind="write"`: only "write", with the write token's
    owner, role and write scope, read as the publisher (for a caller listed in `publishers`); `kind="read"`: only
    the read token."""
    from jobs import lifecycle
    _harden()
    if kind not in (None, "read", "write"):
        raise UsageError(f"unknown token kind {kind!r}", "use kind='read', kind='write' or leave it out (both)")
    loaded = load_outputs(outputs)
    if kind == "write":
        return {"write": lifecycle.write_status(loaded, as_publisher=True)}
    info = lifecycle.status(loaded)
    return info if kind == "read" else {**info, "write": lifecycle.write_status(loaded)}


def set_token(outputs: OutputsLike, token: HfToken | str, *, model: str | None = None, revision: str = "main",
              keep_versions_for_jobs: bool = False, force: bool = False, kind: str = "read",
              repo: str | None = None) -> SetResult:
    """Validate a token against the Hub (and a model's gated access), add it as a new version, disable the old.
    `keep_versions_for_jobs=True` is `token rotate`. `kind="write"` stores the write token (`publish`), checked by
    its own preflight (against `repo`, the target repository, if given): a read token is refused (AccessDenied).
    Returns jobs.lifecycle.SetResult."""
    from jobs import lifecycle
    _harden()
    if kind not in ("read", "write"):
        raise UsageError(f"unknown token kind {kind!r}", "use kind='read' (training) or kind='write' (publishing)")
    value = token if isinstance(token, HfToken) else HfToken(token, source="api")
    return lifecycle.set_token(load_outputs(outputs), value, model, revision,
                               keep_versions_for_jobs=keep_versions_for_jobs, force=force, write=kind == "write",
                               repo=repo)


def review_live(env: str, *, plan: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                accept: str | os.PathLike | None = None) -> dict:
    """`hfgate review --live`: the review of the plan of `env` (or a `terraform show -json` plan) together with what
    Cloud Asset Inventory shows deployed in its projects and their folders and organization, as the caller (needs
    roles/cloudasset.viewer: README, Reviewing what is deployed). Returns the report (`report["ok"]` is the verdict;
    `report["live"]` holds the deployed-only paths with their origin, the drift table, the secrets' versions
    (create time, state) and what could not be read);
    writes REPORT.md, report.json and report.sarif to `out` (default reports/<env>-live)."""
    from review.live import run
    report, _paths = run(env, plan=Path(plan) if plan else None, out=Path(out) if out else None,
                         accept=Path(accept) if accept else None)
    return report

"""Token lifecycle: set (validate first, then add a version, then disable the older ones), status, rotate.

The token is read from stdin (no echo on a terminal) or from the local Hugging Face login, never from argv. A token
the Hub rejects adds nothing. Older versions are disabled, never destroyed, so a rollback is `gcloud secrets
versions enable`.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass, field

from jobs.errors import AccessDenied, HfgateError, NotFound, TokenError
from jobs.token import HfToken
from stacks.contract import Outputs

log = logging.getLogger("hfgate.token")
ACTIVE = ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_CANCELLING")


def read_new_token(from_hf_login: bool = False, stdin=None) -> HfToken:
    """From the Hugging Face login (`hf auth login`) or standard input; a terminal gets a no-echo prompt."""
    if from_hf_login:
        from huggingface_hub import get_token
        value = get_token()
        if not value:
            raise TokenError("no local Hugging Face login found",
                             "run `hf auth login` first, or pipe the token: hfgate token set < token.txt")
        return HfToken(value, source="huggingface_hub.get_token()")
    stdin = stdin or sys.stdin
    if stdin.isatty():
        import getpass
        value = getpass.getpass("Hugging Face token (input hidden): ")
    else:
        value = stdin.read()
    # One trailing newline is what `echo` and editors add; anything else is the token's problem to report.
    if value.endswith("\n") and "\n" not in value.rstrip("\r\n"):
        value = value.rstrip("\r\n")
    return HfToken(value, source="stdin")


@dataclass
class SetResult:
    version: str
    fingerprint: str
    user: str | None
    role: str | None
    disabled: list[str] = field(default_factory=list)
    kept_for_jobs: dict[str, list[str]] = field(default_factory=dict)   # version -> running jobs


def validate(token: HfToken, model: str | None = None, revision: str = "main", *, write: bool = False,
             repo: str | None = None):
    """The preflight, before anything is written (the write token's own with `write`, against `repo` if given).
    Raises a TokenError/AccessDenied/NotFound with the report."""
    from jobs.preflight import preflight, write_preflight
    report = write_preflight(token, repo) if write else preflight(token, model, revision)
    if not report.ok:
        failed = [c for c in report.checks if c.status == "fail"]
        err = HfgateError("; ".join(c.detail for c in failed) + " (nothing was stored)",
                          failed[0].fix, exit_code=report.exit_code)
        err.report = report
        raise err
    return report


def _client():
    from jobs import endpoints
    return endpoints.secret_manager()


def _call(fn, what: str, outputs: Outputs, secret: str | None = None):
    from google.api_core import exceptions as gexc
    from jobs.secret import _who, _with_retries
    secret = secret or outputs.token_secret
    try:
        return _with_retries(fn, what)
    except gexc.PermissionDenied:
        who = _who()
        import os
        local = ("; on the local cloud, the env file makes you the submitter: store a token as its platform admin"
                 " with `python -m localcloud token-set`") if os.environ.get("HFGATE_LOCALCLOUD_STATE") else ""
        raise AccessDenied(f"{who} may not {what} on {secret}",
                           "the platform team adds versions: grant roles/secretmanager.secretVersionManager on the"
                           f" secret (not the project) to {who}, or ask someone who has it{local}") from None
    except gexc.NotFound:
        raise NotFound(f"secret {secret} does not exist",
                       f"deploy the stacks for env {outputs.env} (make deploy ENV={outputs.env})") from None


def _versions(outputs: Outputs, client, secret: str | None = None):
    secret = secret or outputs.token_secret
    return list(_call(lambda: client.list_secret_versions(request={"parent": secret}), "list versions", outputs,
                      secret))


def running_jobs_by_version(outputs: Outputs) -> dict[str, list[str]]:
    """Active hfgate jobs of the team (vertex.of_team: its project and its trainer, not a label any job may carry)
    per token version number, from the labels submit puts on every job."""
    from jobs.vertex import team_jobs
    jobs = team_jobs(outputs, 'labels.managed-by="hfgate"', "the job list")
    out: dict[str, list[str]] = {}
    for job in jobs:
        if job.state.name in ACTIVE:
            out.setdefault(job.labels.get("hfgate-token-version", ""), []).append(job.name)
    return out


def set_token(outputs: Outputs, token: HfToken, model: str | None = None, revision: str = "main",
              keep_versions_for_jobs: bool = False, force: bool = False, client=None, *, write: bool = False,
              repo: str | None = None) -> SetResult:
    """Validate, add, then disable the previously enabled versions (kept if a running job uses them, when asked).
    With `write`: the write token (publishing), validated by its own preflight (against `repo` if given); jobs
    never use it, so nothing is kept for them."""
    import google_crc32c
    from google.cloud.secretmanager_v1 import types as sm

    report = validate(token, model, revision, write=write, repo=repo)
    secret = outputs.write_token_secret if write else outputs.token_secret
    client = client or _client()
    previous = [v for v in _versions(outputs, client, secret) if v.state == sm.SecretVersion.State.ENABLED]
    busy = running_jobs_by_version(outputs) if keep_versions_for_jobs and not write else {}
    data = token.reveal().encode()
    added = _call(lambda: client.add_secret_version(request={
        "parent": secret,
        "payload": sm.SecretPayload(data=data, data_crc32c=google_crc32c.value(data))}), "add a version", outputs,
        secret)
    result = SetResult(added.name, token.fingerprint, report.user, report.token_role)
    for v in previous:
        number = v.name.rsplit("/", 1)[-1]
        if busy.get(number) and not force:
            result.kept_for_jobs[v.name] = busy[number]
            continue
        _call(lambda name=v.name: client.disable_secret_version(request={"name": name}), "disable a version",
              outputs, secret)
        result.disabled.append(v.name)
    log.info("stored token %s as %s", token.fingerprint, added.name)
    return result


@dataclass
class VersionInfo:
    name: str
    state: str
    created: str
    is_latest: bool
    jobs: list[str] = field(default_factory=list)


def status(outputs: Outputs, client=None) -> dict:
    """Versions, which one `latest` is, who owns the current token, rotation due date, and jobs per version."""
    from google.api_core import exceptions as gexc
    from jobs.preflight import preflight
    from jobs.secret import read_token
    from jobs.vertex import team_jobs

    client = client or _client()
    versions = _versions(outputs, client)
    secret = _call(lambda: client.get_secret(request={"name": outputs.token_secret}), "read the secret", outputs)
    jobs: dict[str, list[dict]] = {}
    for job in team_jobs(outputs, 'labels.managed-by="hfgate"', "the job list"):     # the team's, not a label's
        jobs.setdefault(job.labels.get("hfgate-token-version", ""), []).append(
            {"job": job.name, "state": job.state.name.removeprefix("JOB_STATE_")})
    latest = versions[0].name if versions else None      # the service lists newest first; `latest` is the newest
    info = {"secret": outputs.token_secret, "latest": latest, "versions": [], "owner": None, "role": None,
            "fingerprint": None, "rotation_period_days": None, "rotation_due": None, "problems": []}
    for v in versions:
        number = v.name.rsplit("/", 1)[-1]
        info["versions"].append({"version": number, "name": v.name, "state": v.state.name,
                                 "created": v.create_time.isoformat() if v.create_time else None,
                                 "latest": v.name == latest, "jobs": jobs.get(number, [])})
    enabled = [v for v in versions if v.state.name == "ENABLED"]
    if len(enabled) > 1:
        info["problems"].append(f"{len(enabled)} versions are enabled: disable the old ones (hfgate token rotate)")
    if latest and versions[0].state.name != "ENABLED":
        info["problems"].append(f"`latest` ({latest}) is {versions[0].state.name}: jobs pinning latest will fail;"
                                " run hfgate token set")
    if secret.rotation and secret.rotation.rotation_period:
        period = secret.rotation.rotation_period
        info["rotation_period_days"] = period.days
        if enabled:
            due = enabled[0].create_time + period
            info["rotation_due"] = due.isoformat()
            if due < dt.datetime.now(dt.timezone.utc):
                info["problems"].append(f"rotation was due {due:%Y-%m-%d}: run hfgate token rotate")
    if latest and versions[0].state.name == "ENABLED":
        try:
            pinned = read_token(outputs, "latest", client)
            report = preflight(pinned.token, None)
            info.update(owner=report.user, role=report.token_role, fingerprint=pinned.token.fingerprint)
            if not report.ok:
                info["problems"] += [c.detail for c in report.checks if c.status == "fail"]
        except (HfgateError, gexc.GoogleAPICallError) as exc:
            info["problems"].append(f"could not read the current token: {getattr(exc, 'message', exc)}")
    if not versions:
        from jobs.secret import set_token_fix
        info["problems"].append(f"no versions yet: add one {set_token_fix(outputs)}")
    return info


def write_status(outputs: Outputs, client=None, *, as_publisher: bool = False) -> dict:
    """The write token (publishing): its versions (as the caller lists them), and with `as_publisher` whose token it
    is and where it may write, read as the publisher (impersonated, as `hfgate publish` reads it: the publisher is
    its only reader, so nobody else's credentials read it here). What cannot be read is a problem line saying why,
    never an error."""
    from google.api_core import exceptions as gexc
    from jobs.preflight import write_preflight
    from jobs.publish import publisher_secret_client
    from jobs.secret import read_token

    client = client or _client()
    info: dict = {"secret": outputs.write_token_secret, "latest": None, "versions": [], "owner": None,
                  "role": None, "fingerprint": None, "scope": None, "problems": []}
    try:
        versions = _versions(outputs, client, outputs.write_token_secret)
    except HfgateError as exc:
        versions = None
        info["problems"].append(exc.message)
    for v in versions or []:
        info["versions"].append({"version": v.name.rsplit("/", 1)[-1], "name": v.name, "state": v.state.name,
                                 "created": v.create_time.isoformat() if v.create_time else None,
                                 "latest": v is versions[0]})
    if versions:
        info["latest"] = versions[0].name
        if versions[0].state.name != "ENABLED":
            info["problems"].append(f"`latest` ({info['latest']}) is {versions[0].state.name}: hfgate publish will"
                                    " fail; run hfgate token set --kind write")
    elif versions is not None:
        info["problems"].append("no write token stored: hfgate token set --kind write (needed by hfgate publish)")
    if not as_publisher:
        if versions:
            info["problems"].append("whose token it is: only the publisher reads it; a publisher (`publishers` in"
                                    f" config/{outputs.env}.toml) sees it with: hfgate token status --kind write")
        return info
    try:
        pinned = read_token(outputs, "latest", publisher_secret_client(outputs), write=True)
        report = write_preflight(pinned.token)
        info.update(owner=report.user, role=report.token_role, fingerprint=pinned.token.fingerprint)
        info["scope"] = next((c.detail for c in report.checks if c.name == "write access"), None)
        info["problems"] += [c.detail for c in report.checks if c.status == "fail"]
    except (HfgateError, gexc.GoogleAPICallError) as exc:
        info["problems"].append(f"could not read the write token as the publisher: {getattr(exc, 'message', exc)}")
    return info

"""Read the token from Secret Manager at submit time: pin `latest` to a version, verify CRC32C, never print it."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from jobs.errors import AccessDenied, NotFound, TokenError, Transient
from jobs.token import HfToken
from stacks.contract import Outputs

log = logging.getLogger("hfgate.secret")
RETRIES = 4


@dataclass(frozen=True)
class PinnedToken:
    token: HfToken
    version_name: str     # projects/N/secrets/S/versions/V: what the job reads, never `latest`

    @property
    def version(self) -> str:
        return self.version_name.rsplit("/", 1)[-1]


def _with_retries(call, what: str):
    from google.api_core import exceptions as gexc
    delay = 0.2
    for attempt in range(RETRIES):
        try:
            return call()
        except (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.InternalServerError,
                gexc.DeadlineExceeded) as exc:
            if attempt == RETRIES - 1:
                raise Transient(f"Secret Manager did not answer {what} after {RETRIES} tries ({exc.message})",
                                "check your network or https://status.cloud.google.com, then try again") from None
            time.sleep(delay)
            delay *= 2


def _who() -> str:
    try:
        from jobs.endpoints import credentials
        creds = credentials()
        if getattr(creds, "service_account_email", None) == "default":   # metadata credentials learn it on refresh
            import google.auth.transport.requests
            creds.refresh(google.auth.transport.requests.Request())
        email = getattr(creds, "service_account_email", None) or getattr(creds, "signer_email", "")
        return email if email and email != "default" else "you"
    except Exception:  # noqa: BLE001 - only used to word a message
        return "the caller"


def read_token(outputs: Outputs, version: str = "latest", client=None, *, write: bool = False) -> PinnedToken:
    """The read token (training), or with `write` the write token (publishing: pass a client whose credentials
    are the publisher's, see jobs.publish)."""
    from google.api_core import exceptions as gexc
    import google_crc32c

    from jobs import endpoints
    client = client or endpoints.secret_manager()
    secret = outputs.write_token_secret if write else outputs.token_secret
    kind = " --kind write" if write else ""
    name = f"{secret}/versions/{version}"
    try:
        resp = _with_retries(lambda: client.access_secret_version(name=name), f"access to {name}")
    except gexc.PermissionDenied:
        who = _who()
        if write:
            raise AccessDenied(f"{who} may not read the write token {secret}",
                               f"only the publisher {outputs.publisher_email} reads it: publish through it (hfgate"
                               " publish impersonates it; add yourself to `publishers` in config/"
                               f"{outputs.env}.toml and apply)") from None
        if outputs.team:
            raise AccessDenied(f"{who} may not read team {outputs.team}'s token {secret}",
                               f"only team {outputs.team}'s trainer and submitter read it: if you are in team"
                               f" {outputs.team}, act as its submitter {outputs.submitter_email} (its `submitters`"
                               " in config/<env>.toml may impersonate it); otherwise pass your own team's --team")
        raise AccessDenied(f"{who} may not read {secret} (or it does not exist: check --env / --outputs)",
                           f"grant roles/secretmanager.secretAccessor on the secret (not the project) to {who}:"
                           f" gcloud secrets add-iam-policy-binding {secret.rsplit('/', 1)[-1]}"
                           f" --project {outputs.project_id} --member serviceAccount:{who}"
                           " --role roles/secretmanager.secretAccessor (the stacks grant it to the submitter"
                           f" {outputs.submitter_email} and the trainer)") from None
    except gexc.NotFound as exc:
        if "Secret Version" in (exc.message or "") or version != "latest":
            raise NotFound(f"{secret} has no version {version!r}" if version != "latest" else
                           f"{secret} has no versions yet",
                           f"add the token {set_token_fix(outputs, kind)}") from None
        raise NotFound(f"secret {secret} does not exist",
                       f"deploy the stacks for env {outputs.env} (make deploy ENV={outputs.env}), or check"
                       " --outputs points at the right environment") from None
    except gexc.FailedPrecondition as exc:
        state = "destroyed" if "DESTROYED" in (exc.message or "") else "disabled"
        raise NotFound(f"{name} is {state}" + (" (`latest` is the newest version, whatever its state)"
                                               if version == "latest" else ""),
                       f"add a fresh version {set_token_fix(outputs, kind)}" +
                       ("" if state == "destroyed" else
                        f", or enable it: gcloud secrets versions enable {resp_version(exc)} --secret"
                        f" {secret.rsplit('/', 1)[-1]}")) from None
    data = resp.payload.data
    if resp.payload.data_crc32c and google_crc32c.value(data) != resp.payload.data_crc32c:
        raise Transient(f"{resp.name} arrived corrupted (CRC32C mismatch)", "try again")
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise TokenError(f"{resp.name} is not text",
                         f"store the token itself {set_token_fix(outputs, kind)}")
    if value.endswith("\n") and value.strip() and "\n" not in value.strip():
        log.warning("the secret ends with a newline (as `echo TOKEN | gcloud secrets versions add` stores it);"
                    " stripped it. Store it with `hfgate token set` or `printf %%s` to avoid this.")
        value = value.rstrip("\r\n")
    token = HfToken(value, source=resp.name)
    log.info("read token %s from %s", token.fingerprint, resp.name)
    return PinnedToken(token, resp.name)


def set_token_fix(outputs: Outputs, kind: str = "") -> str:
    """How to store a token in this environment (its team's, where it has teams), as an admin does it; on the
    local cloud (its env file sets HFGATE_LOCALCLOUD_STATE), the local cloud's command that does it as its
    platform admin."""
    import os
    team = f" --team {outputs.team}" if outputs.team else ""
    fix = f"as a platform admin: hfgate token set{kind} --env {outputs.env}{team} < token.txt"
    if os.environ.get("HFGATE_LOCALCLOUD_STATE"):
        seeded = " --hub-token alice-fg-write-acme --kind write --repo acme/NAME" if kind else " --model MODEL"
        fix += f"; on the local cloud, its admin stores a seeded token: python -m localcloud token-set{seeded}{team}"
    return fix


def resp_version(exc) -> str:
    import re
    m = re.search(r"versions/(\d+)", exc.message or "")
    return m.group(1) if m else "VERSION"

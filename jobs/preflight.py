"""Preflight: check the token against the Hub before any GPU is paid for.

The independent checks (whoami, model info, auth-check) run concurrently; each yields a row with ✓/✗/! and the
fix. The exit code is the most specific failure: 3 token, 5 not found, 4 access, 6 transient.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from jobs.token import HfToken, shape_problem
from stacks.errors import EXIT_ACCESS, EXIT_NOT_FOUND, EXIT_OK, EXIT_TOKEN, EXIT_TRANSIENT

OK, FAIL, WARN = "ok", "fail", "warn"
MARK = {OK: "✓", FAIL: "✗", WARN: "!"}
RETRIES = 4


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    exit_code: int = EXIT_OK


@dataclass
class Report:
    model: str
    revision: str
    checks: list[Check] = field(default_factory=list)
    user: str | None = None
    token_role: str | None = None
    gated: object = None
    commit: str | None = None
    license: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        codes = [c.exit_code for c in self.checks if c.status == FAIL]
        for code in (EXIT_TOKEN, EXIT_NOT_FOUND, EXIT_ACCESS, EXIT_TRANSIENT):
            if code in codes:
                return code
        return max(codes) if codes else EXIT_OK

    def table(self, ok_text: str = "ready to train", fail_text: str = "not ready: nothing was submitted") -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"preflight for {self.model}@{self.revision}" if self.model else "token check"]
        for c in self.checks:
            lines.append(f"  {MARK[c.status]} {c.name.ljust(width)}  {c.detail}")
            if c.fix and c.status != OK:
                lines.append(f"    {' ' * width}  fix: {c.fix}")
        lines.append((ok_text if self.ok else fail_text)
                     + f" ({self.seconds:.2f}s)")
        return "\n".join(lines)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(ok=self.ok, exit_code=self.exit_code)
        return json.dumps(data, indent=2, default=str)


def _hub() -> str:
    """The Hub's web address as huggingface_hub is configured (HF_ENDPOINT), for the URLs in fixes."""
    from huggingface_hub import constants
    return constants.ENDPOINT.rstrip("/")


HUB_TIMEOUT_S = float(__import__("os").environ.get("HFGATE_HUB_TIMEOUT", "15"))
_bounded = False


def _bound_hub_timeouts() -> None:
    """huggingface_hub's default HTTP client has no timeout at all: a Hub that stops answering would hang the
    preflight forever. Give every call a bound (HFGATE_HUB_TIMEOUT seconds, default 15); retries stay bounded."""
    global _bounded
    if _bounded:
        return
    import httpx2
    from huggingface_hub.utils import _http, set_client_factory

    def factory():
        client = _http.default_client_factory()
        client.timeout = httpx2.Timeout(HUB_TIMEOUT_S, connect=min(5.0, HUB_TIMEOUT_S))
        return client
    set_client_factory(factory)
    _bounded = True


def _transport_errors() -> tuple:
    """Connection refused, reset, timeouts: what huggingface_hub's HTTP client raises below HTTP."""
    import httpx2
    return (httpx2.TransportError,)


def _retrying(call):
    """Bounded retries on 429/5xx/connection errors; anything else is an answer."""
    from huggingface_hub.errors import HfHubHTTPError
    delay = 0.2
    for attempt in range(RETRIES):
        try:
            return call()
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status not in (429, 500, 502, 503, 504) or attempt == RETRIES - 1:
                raise
        except (OSError, *_transport_errors()):
            if attempt == RETRIES - 1:
                raise
        time.sleep(delay)
        delay *= 2


def _transient(name: str, exc: Exception) -> Check:
    return Check(name, FAIL, f"the Hub did not answer after {RETRIES} tries ({type(exc).__name__})",
                 "check the network path to huggingface.co (proxy, firewall) or https://status.huggingface.co,"
                 " then try again", EXIT_TRANSIENT)


def preflight(token: HfToken, model: str | None, revision: str = "main", api=None) -> Report:
    """Shape, whoami, and (with a model) model info and gated access, concurrently. `model=None` checks the
    token alone (what `hfgate token set` does without --model)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    t0 = time.perf_counter()
    report = Report(model, revision)
    problem = shape_problem(token.reveal())
    if problem:
        report.checks.append(Check("token shape", FAIL, problem[0], problem[1], EXIT_TOKEN))
        report.seconds = time.perf_counter() - t0
        return report
    report.checks.append(Check("token shape", OK, f"hf_… (sha256:{token.fingerprint})"))
    _bound_hub_timeouts()
    api = api or HfApi()
    value = token.reveal()

    def whoami():
        try:
            return _retrying(lambda: api.whoami(token=value, cache=False))
        except (HfHubHTTPError, OSError, *_transport_errors()) as exc:
            return exc

    def info():
        try:
            return _retrying(lambda: api.model_info(model, revision=revision, token=value, files_metadata=False))
        except (HfHubHTTPError, OSError, *_transport_errors()) as exc:
            return exc

    def auth():
        try:
            return _retrying(lambda: api.auth_check(model, token=value))
        except (HfHubHTTPError, OSError, *_transport_errors()) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=3) as pool:
        f_who = pool.submit(whoami)
        f_info, f_auth = (pool.submit(info), pool.submit(auth)) if model else (None, None)
        who = f_who.result()
        minfo, access = (f_info.result(), f_auth.result()) if model else (None, None)

    # whoami --------------------------------------------------------------------------------------------------------
    fine = None
    if isinstance(who, HfHubHTTPError):
        if who.response is not None and who.response.status_code == 401:
            report.checks.append(Check("token valid", FAIL, "the Hub rejects this token (invalid or revoked)",
                                       "create a new read or fine-grained token at"
                                       " https://huggingface.co/settings/tokens and run `hfgate token set`",
                                       EXIT_TOKEN))
        else:
            report.checks.append(_transient("token valid", who))
    elif isinstance(who, Exception):
        report.checks.append(_transient("token valid", who))
    else:
        access_token = who.get("auth", {}).get("accessToken", {})
        role = access_token.get("role")
        report.user, report.token_role = who.get("name"), role
        orgs = ", ".join(o["name"] for o in who.get("orgs", [])) or "no orgs"
        detail = f"user {who.get('name')} ({orgs}), {role} token {access_token.get('displayName', '')!r}"
        if role == "write":
            report.checks.append(Check("token valid", WARN, detail + ": broader than training needs",
                                       "use a read or fine-grained token (least privilege); a write token can"
                                       " push to every repo its owner can"))
        else:
            report.checks.append(Check("token valid", OK, detail))
        if role == "fineGrained":
            fine = access_token.get("fineGrained", {})

    if not model:
        report.seconds = time.perf_counter() - t0
        return report
    # model ---------------------------------------------------------------------------------------------------------
    if isinstance(minfo, RevisionNotFoundError):
        report.checks.append(Check("model", FAIL, f"{model} has no revision {revision!r}",
                                   f"use an existing branch, tag or commit (see {_hub()}/{model}"
                                   "/tree/main)", EXIT_NOT_FOUND))
    elif isinstance(minfo, RepositoryNotFoundError) and fine is not None and model.split("/")[0] not in {
            s.get("entity", {}).get("name") for s in fine.get("scoped", [])}:
        ns = model.split("/")[0]
        report.checks.append(Check("model", FAIL, f"{model} is outside this fine-grained token's scope (or does"
                                   " not exist)", f"edit the token at {_hub()}/settings/tokens: add read access to"
                                   f" the repo {model} or the namespace {ns}, or use a read token", EXIT_ACCESS))
    elif isinstance(minfo, RepositoryNotFoundError):
        hint = _case_hint(api, model, value)
        report.checks.append(Check("model", FAIL, f"no model {model!r} that this token can see"
                                   " (ids are case-sensitive; private repos look missing too)",
                                   f"did you mean {hint}? (model ids are case-sensitive)" if hint else
                                   "check the spelling at https://huggingface.co/models; for a private repo the"
                                   " token's owner needs access", EXIT_NOT_FOUND))
    elif isinstance(minfo, Exception):
        report.checks.append(_transient("model", minfo))
    else:
        report.gated, report.commit = minfo.gated, minfo.sha
        card = minfo.card_data or {}
        report.license = card.get("license") if hasattr(card, "get") else None
        gating = {False: "not gated", "auto": "gated (automatic approval)", "manual": "gated (manual approval)"}
        report.checks.append(Check("model", OK, f"{model}@{(minfo.sha or '')[:12]}, "
                                   f"{gating.get(minfo.gated, str(minfo.gated))}"
                                   + (", private" if minfo.private else "")))
        files = [s.rfilename for s in (minfo.siblings or [])]
        if any(f.endswith(".safetensors") for f in files):
            report.checks.append(Check("weights", OK, "safetensors in the file list (not opened)"))
        elif any(f.endswith((".bin", ".pt", ".pth", ".ckpt")) for f in files):
            report.checks.append(Check("weights", WARN, "only pickle weights (.bin): loading them runs code",
                                       "prefer a revision with safetensors, or trust this repo explicitly"))
        else:
            report.checks.append(Check("weights", WARN, "no weight files found at this revision",
                                       "check the revision"))

    # access --------------------------------------------------------------------------------------------------------
    if isinstance(access, GatedRepoError):
        msg = access.server_message or str(access)
        if "awaiting a review" in msg:
            detail, fix = "your access request is awaiting the authors' review", \
                f"wait for approval at {_hub()}/{model} (manual gating), or use another model"
        elif "rejected" in msg:
            detail, fix = "the authors rejected this account's access request", \
                "ask the model's authors, or train with another account's token"
        elif fine is not None and not fine.get("canReadGatedRepos"):
            detail, fix = "this fine-grained token lacks 'read access to public gated repos'", \
                "edit the token at https://huggingface.co/settings/tokens and tick 'Read access to contents of" \
                " all public gated repos you can access', or use a read token"
        else:
            detail, fix = (f"{report.user or 'this account'} has not accepted the model's terms",
                           f"open {_hub()}/{model} logged in as {report.user or 'the token owner'},"
                           " accept the terms, then run this check again")
        report.checks.append(Check("gated access", FAIL, detail, fix, EXIT_ACCESS))
    elif isinstance(access, RepositoryNotFoundError):
        if not any(c.name == "model" and c.status == FAIL for c in report.checks):
            report.checks.append(Check("gated access", FAIL, "the token cannot read this repo",
                                       "for private repos the token's owner or org needs access; for fine-grained"
                                       " tokens add the repo or its namespace to the token's scope", EXIT_ACCESS))
    elif isinstance(access, Exception) and not isinstance(access, HfHubHTTPError):
        report.checks.append(_transient("gated access", access))
    elif isinstance(access, HfHubHTTPError):
        status = access.response.status_code if access.response is not None else 0
        if status in (401,):
            pass  # already reported by whoami
        elif status in (429, 500, 502, 503, 504):
            report.checks.append(_transient("gated access", access))
        else:
            report.checks.append(Check("gated access", FAIL, f"the Hub refused ({status})",
                                       "check the token's permissions", EXIT_ACCESS))
    elif not isinstance(minfo, Exception):
        report.checks.append(Check("gated access", OK, "granted" if report.gated else "public model"))
    report.seconds = time.perf_counter() - t0
    return report


def _case_hint(api, model: str, token: str) -> str | None:
    """The Hub matches ids case-sensitively; if a public model differs only in case, name it."""
    try:
        name = model.split("/")[-1]
        for m in api.list_models(search=name, limit=50, token=token):
            if m.id.lower() == model.lower() and m.id != model:
                return m.id
    except Exception:  # noqa: BLE001 - a hint is best effort
        return None
    return None


def _writable(who: dict, namespace: str, repo_id: str | None) -> tuple[bool, str]:
    """Whether a token may write to `namespace` (or the one repository `repo_id`), from whoami-v2 alone, and why."""
    access = who.get("auth", {}).get("accessToken", {})
    role, user = access.get("role"), who.get("name")
    orgs = {o.get("name") for o in who.get("orgs", [])}
    if namespace != user and namespace not in orgs:
        return False, f"{user} is not a member of the organization {namespace}"
    if role == "write":
        return True, f"a write token of {user}"
    if role == "fineGrained":
        for s in access.get("fineGrained", {}).get("scoped", []):
            entity, perms = s.get("entity", {}), s.get("permissions", [])
            if "repo.write" not in perms:
                continue
            if entity.get("name") == namespace and entity.get("type") in ("user", "org"):
                return True, f"fine-grained: write to the repositories of {namespace}"
            if repo_id and entity.get("name") == repo_id and entity.get("type") == "model":
                return True, f"fine-grained: write to {repo_id} only"
        return False, f"this fine-grained token has no write permission on {repo_id or namespace}"
    return False, f"a {role} token cannot write"


def write_preflight(token: HfToken, repo_id: str | None = None, api=None) -> Report:
    """The write token's own check (`hfgate token set --kind write`, and `publish` before any upload): a
    fine-grained token with write on the target organization or repository is what it should be; a broad write
    token works with a warning; a read token, or one that cannot write to the target, is refused (exit 4)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    t0 = time.perf_counter()
    report = Report(repo_id or "", "main")
    problem = shape_problem(token.reveal())
    if problem:
        report.checks.append(Check("token shape", FAIL, problem[0], problem[1], EXIT_TOKEN))
        return report
    report.checks.append(Check("token shape", OK, f"hf_… (sha256:{token.fingerprint})"))
    _bound_hub_timeouts()
    api = api or HfApi()
    try:
        who = _retrying(lambda: api.whoami(token=token.reveal(), cache=False))
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 401:
            report.checks.append(Check("token valid", FAIL, "the Hub rejects this token (invalid or revoked)",
                                       f"create a fine-grained token with write access at {_hub()}/settings/tokens",
                                       EXIT_TOKEN))
        else:
            report.checks.append(_transient("token valid", exc))
        report.seconds = time.perf_counter() - t0
        return report
    except (OSError, *_transport_errors()) as exc:
        report.checks.append(_transient("token valid", exc))
        report.seconds = time.perf_counter() - t0
        return report
    access = who.get("auth", {}).get("accessToken", {})
    role = access.get("role")
    report.user, report.token_role = who.get("name"), role
    orgs = ", ".join(o["name"] for o in who.get("orgs", [])) or "no orgs"
    detail = f"user {who.get('name')} ({orgs}), {role} token {access.get('displayName', '')!r}"
    scoped_fix = (f"create a fine-grained token at {_hub()}/settings/tokens with 'Write access to contents/settings"
                  f" of selected repos' on {repo_id or 'the target organization'}, then: hfgate token set --kind"
                  " write")
    if role == "read":
        report.checks.append(Check("write access", FAIL, detail + ": a read token cannot publish", scoped_fix,
                                   EXIT_ACCESS))
    elif role == "write":
        report.checks.append(Check("write access", WARN, detail + ": writes to every repository its owner and"
                                   " their organizations can", "prefer a fine-grained token scoped to the target"
                                   " organization or repository (least privilege): " + scoped_fix))
    elif role == "fineGrained":
        writes = [s["entity"]["name"] for s in access.get("fineGrained", {}).get("scoped", [])
                  if "repo.write" in s.get("permissions", [])]
        if writes:
            report.checks.append(Check("write access", OK, detail + f": writes to {', '.join(writes)}"))
        else:
            report.checks.append(Check("write access", FAIL, detail + ": no write permission anywhere",
                                       scoped_fix, EXIT_ACCESS))
    else:
        report.checks.append(Check("write access", FAIL, detail + ": not a user access token", scoped_fix,
                                   EXIT_ACCESS))
    if repo_id and report.ok:
        ok, why = _writable(who, repo_id.split("/")[0], repo_id)
        if ok and not _writable(who, repo_id.split("/")[0], None)[0]:
            try:
                ok, why = _scoped_repo_exists(api, token, repo_id, why)
            except (HfHubHTTPError, OSError, *_transport_errors()) as exc:
                report.checks.append(_transient("target", exc))
                report.seconds = time.perf_counter() - t0
                return report
        report.checks.append(Check("target", OK if ok else FAIL, f"{repo_id}: {why}",
                                   "" if ok else _scoped_repo_fix(repo_id) if "cannot create" in why else
                                   scoped_fix, EXIT_OK if ok else EXIT_ACCESS))
    report.seconds = time.perf_counter() - t0
    return report


def _scoped_repo_exists(api, token: HfToken, repo_id: str, why: str) -> tuple[bool, str]:
    """A token scoped to one repository writes it but creates no repository (creating is the namespace's right):
    the repository must exist already, which the token itself can see (its scope reads it)."""
    from huggingface_hub.errors import RepositoryNotFoundError
    try:
        _retrying(lambda: api.model_info(repo_id, token=token.reveal()))
    except RepositoryNotFoundError:
        return False, (f"the token is scoped to {repo_id} alone and it does not exist: a repository-scoped token"
                       " cannot create it")
    return True, why


def _scoped_repo_fix(repo_id: str) -> str:
    org = repo_id.split("/")[0]
    return (f"create {repo_id} on the Hub first (private: {_hub()}/new, owner {org}), then run this again; or use a"
            f" fine-grained token with 'Write access to contents/settings' on {org}")

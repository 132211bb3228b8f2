"""Publish a finished run to the Hub with the write token: from the submitter's side, never from a training job.

Order, so that a refusal uploads nothing: the repository id must be one the Hub accepts (before any credential is
used); the job must have SUCCEEDED; the run's folder must be complete (config, safetensors weights and every shard
an index names) and hold nothing written after the job ended; the caller impersonates the publisher account (the
only reader of the write token; the read token is never touched); the write token passes its own preflight against
the target; a gated base model's derivative goes public only when asked explicitly, and an existing private
repository is not made public. Then: the run is downloaded, hashing the bytes the bucket sends (resumable: a cached
file is kept only if its SHA-256 equals the bucket object's), the repository is created private unless `public`,
files an earlier version left there are refused by name (or deleted in the same commit with `replace`), and
everything goes up in one commit with a model card (base model and revision, dataset, run, job, the base model's
license), made on the head that was read (`parent_commit`): of several publishes at once one commits, the others
find the run there. Publishing the same run again makes no commit. Finally every file the Hub lists at the head is
compared, both ways, with the bucket's bytes and the card (LFS SHA-256 or git blob id), and the visibility reported
is the one the Hub holds.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jobs.errors import AccessDenied, HfgateError, NotFound, Transient, UsageError
from stacks.contract import Outputs

log = logging.getLogger("hfgate.publish")
# ORG/NAME as huggingface_hub's validate_repo_id takes it (each part 1-96 of letters, digits, '-', '_', '.', not
# starting or ending with '-' or '.'); `\Z`, not `$`, which lets a trailing newline through. check_repo_id adds the
# library's own rules (no '--' or '..', no '.git' suffix).
_REPO_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
REPO_ID_RE = re.compile(rf"{_REPO_PART}/{_REPO_PART}\Z")
JOB_ID_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/customJobs/)?\d+$")
WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
# Pickle files are never published: loading one runs code (the Hub flags them), and from_pretrained needs none of
# them (the weights are safetensors; training_args.bin is the Trainer's own record).
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
INDEX = "model.safetensors.index.json"
CARD = "README.md"
HUB_OWN = frozenset({".gitattributes"})     # the Hub commits it in every new repository: not a stale file


@dataclass(frozen=True)
class Provenance:
    run: str
    job: str
    base_model: str
    base_revision: str
    base_commit: str          # "" when the job did not record it
    dataset: str
    prefix: str               # runs/<run>/model/ in the artifacts bucket
    finished: str             # the job's end time (RFC 3339)


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    url: str
    commit: str
    private: bool
    created_repo: bool
    files: int
    bytes: int
    uploaded: int             # files the commit changed (0: the Hub already had this run, no commit was made)
    run: str
    job: str
    base_model: str
    license: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    deleted: tuple[str, ...] = ()           # files of an earlier version removed in the same commit (replace=True)
    by_another: bool = False  # a concurrent publish of this run committed it first: this one made no commit


def check_repo_id(repo_id: str) -> None:
    """A repository id the Hub takes (ORG/NAME), else UsageError (exit 2): checked before any credential is used."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    why = "" if isinstance(repo_id, str) and REPO_ID_RE.match(repo_id) else (
        "not ORG/NAME: letters, digits, '-', '_' and '.', at most 96 per part, not starting or ending with '-' or"
        " '.'")
    if not why:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as exc:
            why = str(exc).split(":")[0]
    if why:
        raise UsageError(f"--repo {repo_id!r} is not a repository id the Hub accepts ({why})",
                         "use ORG/NAME, e.g. --repo acme/txgemma-sft")


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else ""


def find_job(outputs: Outputs, job_or_run: str, client=None):
    """A job by id or resource name; or a run by name: its newest job (a run resumed by several jobs)."""
    from google.api_core import exceptions as gexc

    from jobs import vertex
    from jobs.secret import _who
    try:
        if JOB_ID_RE.match(job_or_run):
            return vertex.get(job_or_run, outputs, client)
        # The team's jobs only (vertex.of_team: its project, its trainer): a look-alike named like the run, made by
        # anyone else who may create jobs in the project, neither blocks the publish nor stands in for its
        # provenance.
        jobs = [j for j in vertex.team_jobs(outputs, 'labels.managed-by="hfgate"', "the job list", client)
                if j.display_name == job_or_run]
    except gexc.PermissionDenied:
        who = _who()
        raise AccessDenied(f"{who} may not read the jobs of {outputs.project_id} (Vertex AI), so it cannot publish"
                           " their runs", f"publish from an identity listed in `publishers` in config/{outputs.env}"
                           ".toml (the submitter by default): it reads the run's job and acts as the publisher") \
            from None
    if not jobs:
        raise NotFound(f"no hfgate job or run named {job_or_run!r} in {outputs.env}",
                       "pass a job id (hfgate submit prints it) or the run's --display-name")
    return max(jobs, key=lambda j: j.create_time.timestamp() if j.create_time else 0)


def provenance(outputs: Outputs, job) -> Provenance:
    """What the job trained, from its own spec: trl's arguments (a mirror path names the repository and commit)."""
    args = list(job.job_spec.worker_pool_specs[0].container_spec.args)
    model, revision = _arg(args, "--model_name_or_path"), _arg(args, "--model_revision") or "main"
    dataset, out = _arg(args, "--dataset_name"), _arg(args, "--output_dir")
    commit = job.labels.get("hfgate-model-commit", "")
    m = re.match(rf"^/gcs/{re.escape(outputs.mirror_bucket_name)}/models/(.+)/([0-9a-f]{{40}})$", model)
    if m:
        model, commit = m.group(1), m.group(2)
        revision = revision if revision != commit else commit
    d = re.match(rf"^/gcs/{re.escape(outputs.mirror_bucket_name)}/datasets/(.+)/[0-9a-f]{{40}}$", dataset)
    if d:
        dataset = d.group(1)
    run = job.display_name
    expected = f"/gcs/{outputs.artifacts_bucket_name}/runs/{run}/model"
    if out != expected:
        raise UsageError(f"job {job.name} wrote to {out or '(no --output_dir)'}, not to its run's folder {expected}",
                         "publish runs submitted by hfgate to this environment")
    end = job.end_time.isoformat() if job.end_time else ""
    return Provenance(run=run, job=job.name, base_model=model, base_revision=revision, base_commit=commit,
                      dataset=dataset, prefix=f"runs/{run}/model/", finished=end)


def run_files(outputs: Outputs, prov: Provenance, job, client=None) -> list:
    """The run's final files (checkpoint-* folders are training state, not the result), refused unless complete
    and all written before the job ended."""
    from jobs import endpoints
    client = client or endpoints.storage(outputs.project_id)
    blobs = [b for b in client.list_blobs(outputs.artifacts_bucket_name, prefix=prov.prefix)
             if not re.match(r"checkpoint-\d+/", b.name[len(prov.prefix):]) and not b.name.endswith("/")
             and not b.name.lower().endswith(PICKLES)]
    names = {b.name[len(prov.prefix):]: b for b in blobs}
    where = f"gs://{outputs.artifacts_bucket_name}/{prov.prefix}"
    problems = []
    if not names:
        problems.append(f"{where} is empty")
    if names and "config.json" not in names and "adapter_config.json" not in names:
        problems.append("no config.json (or adapter_config.json)")
    if INDEX in names:
        import json
        index = json.loads(names[INDEX].download_as_bytes())
        missing = sorted(set(index.get("weight_map", {}).values()) - set(names))
        if missing:
            problems.append(f"{INDEX} names shards that are not there: {', '.join(missing[:5])}")
    elif names and not any(w in names for w in WEIGHTS):
        problems.append("no safetensors weights (model.safetensors, a sharded index, or adapter_model.safetensors)")
    problems += [f"{n} is empty" for n, b in sorted(names.items()) if not b.size and n.endswith(".safetensors")]
    if job.end_time:
        late = sorted(n for n, b in names.items() if b.updated and b.updated > job.end_time)
        if late:
            problems.append(f"written after the job ended ({job.end_time:%Y-%m-%d %H:%M:%S}): {', '.join(late[:5])}"
                            " - not the job's output")
    if problems:
        raise UsageError(f"the run {prov.run} is not complete: " + "; ".join(problems) + " (nothing was uploaded)",
                         "publish a run whose job SUCCEEDED and whose folder was left as the job wrote it;"
                         f" inspect it with: gcloud storage ls -l {where}")
    return [names[n] for n in sorted(names)]


def publisher_secret_client(outputs: Outputs):
    """A Secret Manager client speaking as the publisher account (impersonated with the caller's credentials).
    Refreshed here, so that a caller who may not impersonate it gets AccessDenied now, not a retried RPC error."""
    import google.auth.transport.requests
    from google.auth.exceptions import RefreshError, TransportError

    from jobs import endpoints
    from jobs.secret import _who
    creds = endpoints.impersonated(outputs.publisher_email)
    try:
        creds.refresh(google.auth.transport.requests.Request())
    except RefreshError:
        who = _who()
        raise AccessDenied(f"{who} may not act as the publisher {outputs.publisher_email} (IAM Credentials"
                           " refused to mint its token)",
                           f"add {who} to `publishers` in config/{outputs.env}.toml and apply (it grants Service"
                           " Account Token Creator on the publisher only), or publish from an identity listed"
                           " there") from None
    except TransportError as exc:
        raise Transient(f"IAM Credentials did not answer ({type(exc).__name__})",
                        "check the network path to iamcredentials.googleapis.com, then try again") from None
    return endpoints.secret_manager(creds)


def base_model_facts(token, prov: Provenance) -> tuple[str, object, dict]:
    """(license, gated, extra card fields) of the base model, from its Hub metadata (public even for gated)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    try:
        info = HfApi().model_info(prov.base_model, revision=prov.base_commit or prov.base_revision,
                                  token=token.reveal())
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise NotFound(f"cannot read {prov.base_model}'s card with the write token ({status}): its license"
                       " cannot be carried over", "give the write token read access to the base model, or pass"
                       " --license ID with the base model's license") from None
    card = info.card_data or {}
    get = card.get if hasattr(card, "get") else (lambda k, d=None: d)
    extra = {k: get(k) for k in ("license_name", "license_link") if get(k)}
    return str(get("license") or "other"), info.gated, extra


def model_card(prov: Provenance, license_id: str, gated: object, extra: dict, hub: str) -> str:
    """The card: Hub metadata (base_model, license, datasets) and where the weights came from. Deterministic for a
    run, so publishing it again changes nothing."""
    import yaml
    meta = {"base_model": prov.base_model, "license": license_id, **extra,
            "datasets": [prov.dataset] if prov.dataset and not prov.dataset.startswith("/") else [],
            "tags": ["hfgate", "trl", "sft"], "library_name": "transformers"}
    rev = prov.base_revision + (f" (commit `{prov.base_commit}`)" if prov.base_commit and
                                prov.base_commit != prov.base_revision else "")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {prov.run}", "",
             f"A supervised fine-tune (TRL `trl sft`) of [{prov.base_model}]({hub}/{prov.base_model}), revision"
             f" {rev}, on [{prov.dataset}]({hub}/datasets/{prov.dataset}).", "",
             "| | |", "|---|---|",
             f"| base model | `{prov.base_model}` @ {rev} |", f"| dataset | `{prov.dataset}` |",
             f"| run | `{prov.run}` |", f"| job | `{prov.job}` |", f"| finished | {prov.finished or '-'} |",
             "| published by | hfgate (`hfgate publish`) |", "",
             "## License", "",
             f"This model is a derivative of `{prov.base_model}`, whose license is `{license_id}`"
             + (f" ({extra.get('license_name')}, {extra.get('license_link')})" if extra else "") + "."]
    if gated:
        lines += ["", f"The base model is gated on the Hub: its terms ({hub}/{prov.base_model}) bind this derivative"
                      " too. Whoever uses or shares it must have accepted them."]
    return "\n".join(lines) + "\n"


class _HashingSink:
    """A file-like the bucket's bytes are written through: SHA-256 and git blob id of exactly what the bucket sent
    (and, with `f`, a copy on disk)."""

    def __init__(self, size: int, f=None) -> None:
        from jobs.mirrors import _git_blob_id
        self.f, self.sha, self.git, self.written = f, hashlib.sha256(), _git_blob_id(size), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.git.update(data)
        self.written += len(data)
        if self.f is not None:
            self.f.write(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()

    def digests(self) -> tuple[str, str]:
        return self.sha.hexdigest(), self.git.hexdigest()


def _download(blobs: list, prefix: str, cache: Path,
              progress: Callable[[str], None]) -> tuple[dict[str, Path], int, dict[str, tuple[str, str]]]:
    """Each blob into the cache, and the (SHA-256, git blob id) of the bytes the bucket sent (the client checks the
    download's CRC32C/MD5 too). A file already in the cache (an interrupted publish) is kept only when its own
    SHA-256 equals the bucket object's, read now: CRC32C is no proof of content (anyone can give other bytes the
    same CRC32C). Downloads land under a temporary name and are renamed into place, so two publishes of one run at
    once never read each other's half-written file."""
    import threading
    paths, fetched, hashes = {}, 0, {}
    for i, b in enumerate(blobs, 1):
        rel = b.name[len(prefix):]
        path = cache / rel
        sink = _HashingSink(b.size or 0)
        kept = path.is_file() and path.stat().st_size == b.size
        if kept:
            b.download_to_file(sink)
            kept = _hashes(path) == sink.digests()
            if not kept:
                progress(f"  {rel}: the cached copy differs from the bucket's object (SHA-256): downloaded again")
        if not kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")
            with open(part, "wb") as f:
                sink = _HashingSink(b.size or 0, f)
                b.download_to_file(sink)
            os.replace(part, path)
            fetched += 1
        paths[rel], hashes[rel] = path, sink.digests()
        progress(f"  [{i}/{len(blobs)}] {rel} ({b.size / 1e6:.1f} MB)")
    return paths, fetched, hashes


def _same(theirs: dict, ours: tuple[str, str]) -> bool:
    """A file the Hub lists is ours: its LFS SHA-256 (large files) or git blob id (small ones)."""
    return theirs["sha256"] == ours[0] if theirs["sha256"] else theirs["git"] == ours[1]


def _differences(hub: dict[str, dict], ours: dict[str, tuple[str, str]]) -> list[str]:
    """What keeps `hub` (hub_files of a commit) from being exactly the run's files and card: missing, different,
    and extra files (other than the Hub's own .gitattributes)."""
    problems = [f"{rel} missing" for rel in sorted(set(ours) - set(hub))]
    problems += [f"{rel} differs" for rel in sorted(set(ours) & set(hub)) if not _same(hub[rel], ours[rel])]
    problems += [f"{rel} is not the run's" for rel in sorted(set(hub) - set(ours) - HUB_OWN)]
    return problems


def _hashes(path: Path) -> tuple[str, str]:
    """(SHA-256, git blob id) of a file, in one read."""
    from jobs.mirrors import _git_blob_id
    sha, git = hashlib.sha256(), _git_blob_id(path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            git.update(chunk)
    return sha.hexdigest(), git.hexdigest()


def publish(outputs: Outputs, job_or_run: str, repo_id: str, *, public: bool = False,
            confirm_base_terms: bool = False, license_id: str | None = None, token_version: str = "latest",
            cache_dir: Path | None = None, progress: Callable[[str], None] | None = None,
            on_preflight: Callable | None = None, show_bars: bool = False, replace: bool = False) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from jobs.mirrors import hub_files
    from jobs.preflight import write_preflight
    from jobs.secret import read_token

    say = progress or (lambda line: None)
    check_repo_id(repo_id)
    job = find_job(outputs, job_or_run)
    state = job.state.name
    if state != "JOB_STATE_SUCCEEDED":
        raise UsageError(f"job {job.name} ({job.display_name}) is {state.removeprefix('JOB_STATE_')}: only a run"
                         " whose job SUCCEEDED is published (nothing was uploaded)",
                         "wait for it (hfgate status JOB, or submit --wait), or publish another run")
    prov = provenance(outputs, job)
    blobs = run_files(outputs, prov, job)
    say(f"run {prov.run}: {len(blobs)} files from job {job.name.rsplit('/', 1)[-1]} (SUCCEEDED)")

    pinned = read_token(outputs, token_version, publisher_secret_client(outputs), write=True)
    report = write_preflight(pinned.token, repo_id)
    if on_preflight:
        on_preflight(report)
    if not report.ok:
        failed = [c for c in report.checks if c.status == "fail"]
        err = HfgateError("; ".join(c.detail for c in failed) + " (nothing was uploaded)", failed[0].fix,
                          exit_code=report.exit_code)
        err.report = report  # type: ignore[attr-defined]
        raise err
    warnings = [c.detail + " - " + c.fix for c in report.checks if c.status == "warn"]
    token = pinned.token.reveal()
    api = HfApi()
    hub = constants.ENDPOINT.rstrip("/")
    base_license, gated, extra = base_model_facts(pinned.token, prov) if not license_id else (license_id, None, {})
    if license_id and not gated:
        try:
            gated = api.model_info(prov.base_model, token=token).gated
        except HfHubHTTPError:
            gated = None
    try:
        existing = api.model_info(repo_id, token=token)
    except RepositoryNotFoundError:
        existing = None
    if existing is not None and existing.private and public:
        raise UsageError(f"{repo_id} exists and is private: publishing does not change an existing repository's"
                         " visibility, so --public would not make this run public (nothing was uploaded)",
                         f"drop --public to publish to it privately; or make it public on the Hub first"
                         f" ({hub}/{repo_id}/settings), then run this again with --public")
    goes_public = public or (existing is not None and not existing.private)
    if goes_public and gated and not confirm_base_terms:
        where = "--public" if public else f"{repo_id} (which is public)"
        raise UsageError(f"{prov.base_model} is gated: publishing its derivative to {where} may breach the terms"
                         f" you accepted for it (license {base_license}); nothing was uploaded",
                         f"read the terms at {hub}/{prov.base_model} (redistribution of derivatives, notices, use"
                         " restrictions); if they allow it, add --confirm-base-terms; otherwise publish privately")
    if existing is not None and not existing.private and not public:
        raise UsageError(f"{repo_id} exists and is public: this run would be public (nothing was uploaded)",
                         "pass --public to mean it, or publish to another repository (new ones are private)")

    cache = Path(cache_dir or Path(os.environ.get("HFGATE_CACHE_DIR") or Path.home() / ".cache" / "hfgate")
                 / "publish" / job.name.rsplit("/", 1)[-1])
    paths, fetched, bucket = _download(blobs, prov.prefix, cache / "run", say)
    card_path = cache / "card" / CARD       # the card replaces any README.md the run wrote
    card_path.parent.mkdir(parents=True, exist_ok=True)
    part = card_path.with_name(f".{CARD}.{os.getpid()}-{id(paths)}.part")
    part.write_text(model_card(prov, base_license, gated, extra, hub))
    os.replace(part, card_path)
    paths = {k: v for k, v in paths.items() if k != CARD} | {CARD: card_path}
    # What the Hub must hold afterwards: the bucket's bytes (never the cache's) and the card.
    ours = {k: v for k, v in bucket.items() if k != CARD} | {CARD: _hashes(card_path)}

    created = existing is None
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    bars_were_off = are_progress_bars_disabled()
    if not show_bars:
        disable_progress_bars()
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)        # its "no files have been modified" warning: we say it ourselves
    stale: list[str] = []
    committed, by_another = False, False
    try:
        url = api.create_repo(repo_id, private=not public, exist_ok=True, token=token)
        before = api.model_info(repo_id, token=token).sha or ""
        had = hub_files(pinned.token, repo_id, before) if before else {}
        stale = sorted(set(had) - set(ours) - HUB_OWN)
        if stale and not replace:
            raise UsageError(f"{repo_id} holds files this run does not have: {', '.join(stale[:8])}"
                             f"{' and more' if len(stale) > 8 else ''} (left from an earlier version: from_pretrained"
                             " would load them too); nothing was uploaded",
                             "add --replace to delete them in the same commit as the run's files, or publish to"
                             " another repository")
        head = before
        if _differences(had, ours):
            adds = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in sorted(paths.items())]
            deletes = [CommitOperationDelete(path_in_repo=rel) for rel in stale]
            try:
                # parent_commit: the Hub refuses (412) a commit whose parent is no longer the head, so of two
                # publishes at once only one commits.
                info = api.create_commit(repo_id, [*adds, *deletes], token=token, parent_commit=before or None,
                                         commit_message=f"hfgate publish: run {prov.run}",
                                         commit_description=f"From {prov.job} (base {prov.base_model}).")
                head = info.oid
                # huggingface_hub marks the operations committed only when it sent a commit; when the head
                # already held every file (another publish got there first) it sends none.
                committed = any(getattr(op, "_is_committed", True) for op in adds)
                by_another = not committed and head != before
            except HfHubHTTPError as exc:
                if exc.response is None or exc.response.status_code != 412:
                    raise
                head = api.model_info(repo_id, token=token).sha or ""
                if _differences(hub_files(pinned.token, repo_id, head), ours):
                    raise Transient(f"{repo_id} changed while this run was being published (its head moved from"
                                    f" {before[:12]} to {head[:12]}, which does not hold this run); nothing was"
                                    " committed", "run the same command again: it reads the repository again"
                                    " (files already uploaded are not sent twice)") from None
                by_another = True
        final = api.model_info(repo_id, revision=head, token=token)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise AccessDenied(f"the Hub refused the upload to {repo_id} ({status}): {exc.server_message or exc}",
                               "check the write token's permissions on that repository (hfgate token set --kind"
                               f" write --repo {repo_id} checks them)") from None
        if status in (429, 500, 502, 503, 504) or status is None:
            raise Transient(f"the Hub did not take the upload ({status})",
                            "run the same command again: files already uploaded are not sent twice") from None
        raise HfgateError(f"the Hub refused the upload to {repo_id} ({status}): {exc.server_message or exc}",
                          "see the message; nothing else was changed") from None
    finally:
        quiet.setLevel(level)
        if not show_bars and not bars_were_off:
            enable_progress_bars()
    # Every file the Hub lists at the head, compared with the bucket's objects (and the card), both ways.
    wrong = _differences(hub_files(pinned.token, repo_id, head), ours)
    if wrong:
        raise HfgateError(f"{repo_id}@{head[:12]} does not hold exactly the run: {', '.join(wrong[:5])}",
                          "publish again (add --replace if files of an earlier version are left); if it persists,"
                          " report it (the Hub or the upload path changed the files)")
    uploaded = sum(1 for rel in ours if not (rel in had and _same(had[rel], ours[rel]))) if committed else 0
    if by_another:
        say(f"another publish of this run committed it first: {repo_id}@{head[:12]} already holds it (no commit"
            " made here)")
    say(f"{'nothing new: ' if not committed else ''}{repo_id}@{head[:12]} holds the run"
        f" ({len(ours)} files, hashes checked against the bucket; {fetched} downloaded from the bucket)"
        + (f"; deleted {len(stale)} file(s) of an earlier version" if committed and stale else ""))
    if public and final.private:
        warnings.append(f"{repo_id} is private on the Hub (another publish created it first, private) - make it"
                        f" public on the Hub ({hub}/{repo_id}/settings) if you meant it")
    return PublishResult(repo_id=repo_id, url=str(url), commit=head, private=bool(final.private),
                         created_repo=created, files=len(ours), bytes=sum(p.stat().st_size for p in paths.values()),
                         uploaded=uploaded, run=prov.run, job=prov.job, base_model=prov.base_model,
                         license=base_license, warnings=tuple(warnings),
                         deleted=tuple(stale) if committed else (), by_another=by_another)

"""Import gated weights once: download a repo snapshot with the token, upload it to the artifacts bucket under
`models/<id>/<commit>/` in the mirror bucket (datasets: `datasets/<id>/<commit>/`) with a manifest, verify it. Jobs then train from the
bucket with no token and no Hugging Face egress at all (`submit --token-delivery mirror`).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import HfgateError, NotFound, UsageError
from stacks.contract import Outputs
from stacks.errors import EXIT_OTHER

log = logging.getLogger("hfgate.mirror")
MANIFEST = "hfgate-manifest.json"
MODEL_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken",
                  "README.md", "LICENSE*"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt"]
DATASET_PATTERNS = ["*.jsonl", "*.json", "*.parquet", "*.csv", "*.txt", "*.arrow", "README.md", "**/*.jsonl",
                    "**/*.parquet", "**/*.json", "**/*.csv"]


def prefix_for(repo_id: str, commit: str, repo_type: str = "model") -> str:
    return f"{'datasets' if repo_type == 'dataset' else 'models'}/{repo_id}/{commit}/"


def _crc32c_b64(data_path: Path) -> str:
    import google_crc32c
    c = google_crc32c.Checksum()
    with open(data_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            c.update(chunk)
    return base64.b64encode(c.digest()).decode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class MirrorResult:
    uri: str
    commit: str
    files: int
    bytes: int
    uploaded: int          # 0 when the same commit was mirrored already
    manifest: dict


COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def resolve_commit(token, repo_id: str, revision: str, repo_type: str = "model") -> str:
    """The commit a revision names, as the Hub resolves it (a full commit hash is taken as it is)."""
    if COMMIT_RE.match(revision):
        return revision
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    from jobs.errors import AccessDenied, Transient
    api = HfApi()
    kind = "--dataset" if repo_type == "dataset" else "--model"
    try:
        info = (api.dataset_info if repo_type == "dataset" else api.model_info)(repo_id, revision=revision,
                                                                                token=token.reveal())
    except RevisionNotFoundError:
        raise NotFound(f"{repo_id} has no revision {revision!r}", f"check {kind} and --revision") from None
    except RepositoryNotFoundError:
        raise NotFound(f"{repo_id} does not exist or the token cannot see it", f"check {kind} (case-sensitive)") \
            from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise AccessDenied(f"the Hub refused to resolve {repo_id}@{revision} ({status})",
                               "run `hfgate check` for the diagnosis, or pass --revision <full commit hash>") from None
        raise Transient(f"the Hub did not resolve {repo_id}@{revision} ({status})",
                        "try again, or pass --revision <full commit hash> (no Hub call needed)") from None
    except OSError as exc:
        raise Transient(f"cannot reach the Hub to resolve {repo_id}@{revision} ({type(exc).__name__})",
                        "try again, or pass --revision <full commit hash> (no Hub call needed)") from None
    return info.sha


def find_manifest(outputs: Outputs, repo_id: str, commit: str, repo_type: str = "model",
                  client=None) -> tuple[dict, str] | None:
    """The manifest at exactly `<type>s/<id>/<commit>/` and the SHA-256 of its bytes, or None. The folder is chosen
    by the commit the caller resolved, never by anything a manifest says about itself; a manifest whose own id,
    type or commit disagree with its folder is refused."""
    from jobs import endpoints
    client = client or endpoints.storage(outputs.project_id)
    blob = client.bucket(outputs.mirror_bucket_name).blob(prefix_for(repo_id, commit, repo_type) + MANIFEST)
    if not blob.exists():
        return None
    raw = blob.download_as_bytes()
    try:
        manifest = json.loads(raw)
    except ValueError:
        manifest = {}
    if (manifest.get("id"), manifest.get("commit"), manifest.get("type", "model")) != (repo_id, commit, repo_type):
        raise HfgateError(f"the mirror manifest at {outputs.mirror_bucket}/{blob.name} does not describe"
                          f" {repo_id}@{commit}", "delete that folder and run `hfgate mirror` again",
                          exit_code=EXIT_OTHER)
    return manifest, hashlib.sha256(raw).hexdigest()


def hub_files(token, repo_id: str, commit: str, repo_type: str = "model") -> dict[str, dict]:
    """What the Hub itself publishes for every file of `commit`: its size, its git blob id and, for LFS files, the
    SHA-256 of its content. The mirror is proven against these, never only against its own manifest."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    from jobs.errors import Transient
    try:
        entries = list(HfApi().list_repo_tree(repo_id, revision=commit, repo_type=repo_type, recursive=True,
                                              token=token.reveal()))
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        raise Transient(f"the Hub did not list {repo_id}@{commit[:12]} ({status}): the mirror cannot be proven"
                        " against it", "try again (`hfgate check` diagnoses the token)") from None
    except OSError as exc:
        raise Transient(f"cannot reach the Hub to prove the mirror of {repo_id}@{commit[:12]}"
                        f" ({type(exc).__name__})", "try again when the Hub is reachable") from None
    return {e.path: {"size": e.size, "git": e.blob_id, "sha256": e.lfs.sha256 if e.lfs else None}
            for e in entries if isinstance(e, RepoFile)}


def _git_blob_id(size: int):
    h = hashlib.sha1()
    h.update(b"blob %d\0" % size)
    return h


def verify(outputs: Outputs, manifest: dict, client=None, hub: dict[str, dict] | None = None) -> list[str]:
    """Problems with a mirror: every file of the manifest present with its size and SHA-256 (read back from the
    bucket), and nothing else in its folder. With `hub` (hub_files of the same commit), every file must also be
    the Hub's: same size, and the LFS SHA-256 (large files) or git blob id (small ones) the Hub publishes, so a
    mirror rewritten together with its manifest, or planted before the commit was mirrored, is refused."""
    from jobs import endpoints
    client = client or endpoints.storage(outputs.project_id)
    prefix = prefix_for(manifest["id"], manifest["commit"], manifest.get("type", "model"))
    blobs = {b.name.removeprefix(prefix): b for b in client.list_blobs(outputs.mirror_bucket_name, prefix=prefix)}
    listed = {f["path"] for f in manifest["files"]}
    problems = [f"{name} is in the mirror but not in its manifest" for name in sorted(blobs)
                if name != MANIFEST and name not in listed]
    for f in manifest["files"]:
        b = blobs.get(f["path"])
        if b is None:
            problems.append(f"{f['path']} is missing")
        elif b.size != f["size"]:
            problems.append(f"{f['path']} has {b.size} bytes, the manifest says {f['size']}")
        elif not f.get("sha256"):
            problems.append(f"{f['path']} has no SHA-256 in the manifest")
        else:
            h, g = hashlib.sha256(), _git_blob_id(b.size)
            with b.open("rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    h.update(chunk)
                    g.update(chunk)
            if h.hexdigest() != f["sha256"]:
                problems.append(f"{f['path']} does not match its SHA-256")
            elif hub is not None:
                theirs = hub.get(f["path"])
                if theirs is None:
                    problems.append(f"{f['path']} is not a file of {manifest['id']}@{manifest['commit'][:12]} on"
                                    " the Hub")
                elif not (theirs["size"] == b.size and (theirs["sha256"] == h.hexdigest() if theirs["sha256"]
                                                         else theirs["git"] == g.hexdigest())):
                    problems.append(f"{f['path']} is not the file the Hub serves for"
                                    f" {manifest['id']}@{manifest['commit'][:12]} (its "
                                    f"{'LFS SHA-256' if theirs['sha256'] else 'git blob id'} differs)")
    return problems


def mirror(outputs: Outputs, token, repo_id: str, revision: str = "main", repo_type: str = "model",
           allow_pickle: bool = False, who: str = "", out=sys.stderr) -> MirrorResult:
    """Preflight is the caller's; this resolves the commit, downloads, uploads, writes and verifies the manifest."""
    from huggingface_hub import HfApi

    from jobs import endpoints
    api = HfApi()
    value = token.reveal()
    info = (api.dataset_info if repo_type == "dataset" else api.model_info)(repo_id, revision=revision, token=value)
    commit = info.sha
    files = [s.rfilename for s in info.siblings or []]
    patterns = DATASET_PATTERNS if repo_type == "dataset" else MODEL_PATTERNS
    if repo_type == "model" and not any(f.endswith(".safetensors") for f in files):
        if not allow_pickle:
            raise UsageError(f"{repo_id}@{commit[:12]} has only pickle weights (.bin): loading them can run code",
                             "pick a revision with safetensors, or pass --allow-pickle if you trust this repo")
        patterns = patterns + PICKLE_PATTERNS
    client = endpoints.storage(outputs.project_id)
    bucket = client.bucket(outputs.mirror_bucket_name)
    prefix = prefix_for(repo_id, commit, repo_type)
    uri = f"{outputs.mirror_bucket}/{prefix}"

    hub = hub_files(token, repo_id, commit, repo_type)
    known: dict[str, MirrorResult] = {}

    def existing(say: bool) -> MirrorResult | None:
        """The verified mirror of this commit, if it is complete (a forged one is refused)."""
        found = find_manifest(outputs, repo_id, commit, repo_type, client)
        if not found:
            return None
        manifest = found[0]
        found_problems = verify(outputs, manifest, client, hub)
        forged = [p for p in found_problems if "the Hub" in p]
        problems = [p for p in found_problems if p not in forged]
        if forged:
            raise HfgateError(f"the mirror already at {uri} is not what the Hub serves for {repo_id}@{commit[:12]}:"
                              f" {forged[0]}; someone other than `hfgate mirror` wrote it. Nothing was uploaded",
                              f"find who wrote it (the review lists the mirror bucket's writers), delete {uri},"
                              " then run `hfgate mirror` again", exit_code=EXIT_OTHER)
        if problems:
            if say:
                print(f"existing mirror is incomplete ({problems[0]}); uploading again", file=out)
            return None
        known["found"] = MirrorResult(uri, commit, len(manifest["files"]),
                                      sum(f["size"] for f in manifest["files"]), 0, manifest)
        return known["found"]

    def upload() -> str:
        known["made"] = _upload(outputs, api, info, bucket, client, hub, token, repo_id, repo_type, revision, commit,
                                patterns, prefix, uri, who, out)
        return uri

    def done(result: MirrorResult) -> MirrorResult:
        print(f"{repo_id}@{commit[:12]} is already mirrored at {uri} (verified against the Hub; nothing"
              " uploaded)", file=out)
        return result

    first = existing(say=True)
    if first is not None:
        return done(first)
    # Two mirrors of one commit at the same moment upload it once: the caller that wins the claim uploads, the
    # others wait for it (jobs.claim; an upload renews its claim, so a long one is not taken over).
    from jobs import claim
    staging = client.bucket(outputs.staging_bucket_name)
    outcome = claim.once(staging, MIRROR_CLAIM_KEY.format(type=repo_type, id=repo_id, commit=commit), upload,
                         find=lambda: uri if existing(say=False) is not None else None,
                         valid=lambda _: existing(say=False) is not None, wait_s=MIRROR_WAIT_S,
                         progress=lambda line: print(line, file=out, flush=True), what=f"the mirror of {uri}")
    if outcome.created:
        return known["made"]
    result = known.get("found") or existing(say=False)
    if result is None:
        raise HfgateError(f"another `hfgate mirror` reported {uri} done, but it does not verify",
                          "run `hfgate mirror` again", exit_code=EXIT_OTHER)
    return done(result)


MIRROR_CLAIM_KEY = "mirrors/{type}/{id}/{commit}"
MIRROR_WAIT_S = 4 * 3600.0     # how long a second `hfgate mirror` of a commit waits for the first one's upload


def _upload(outputs: Outputs, api, info, bucket, client, hub: dict, token, repo_id: str, repo_type: str,
            revision: str, commit: str, patterns: list[str], prefix: str, uri: str, who: str, out) -> MirrorResult:
    from huggingface_hub import snapshot_download
    value = token.reveal()
    with tempfile.TemporaryDirectory(prefix="hfgate-mirror-") as tmp:
        print(f"downloading {repo_id}@{commit[:12]} ...", file=out, flush=True)
        local = Path(snapshot_download(repo_id, repo_type=repo_type, revision=commit, token=value,
                                       allow_patterns=patterns, local_dir=Path(tmp) / "snapshot"))
        entries = []
        paths = sorted(p for p in local.rglob("*") if p.is_file() and ".cache" not in p.relative_to(local).parts)
        total = sum(p.stat().st_size for p in paths)
        done = 0
        for p in paths:
            rel = p.relative_to(local).as_posix()
            entries.append({"path": rel, "size": p.stat().st_size, "sha256": _sha256(p), "crc32c": _crc32c_b64(p)})
            blob = bucket.blob(prefix + rel)
            blob.upload_from_filename(str(p))
            done += p.stat().st_size
            print(f"  uploaded {rel} ({done * 100 // max(total, 1)}% of {total / 1e6:.1f} MB)", file=out, flush=True)
        card = getattr(info, "card_data", None) or {}
        manifest = {
            "hfgate_manifest": 1, "id": repo_id, "type": repo_type, "revision": revision, "commit": commit,
            "gated": getattr(info, "gated", False), "license": card.get("license") if hasattr(card, "get") else None,
            "files": entries, "mirrored_by": who, "mirrored_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "source": f"{api.endpoint}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}",
        }
        bucket.blob(prefix + MANIFEST).upload_from_string(json.dumps(manifest, indent=2),
                                                          content_type="application/json")
    problems = verify(outputs, manifest, client, hub)
    if problems:
        raise HfgateError(f"the mirror at {uri} does not verify: {problems[0]}", "run `hfgate mirror` again",
                          exit_code=EXIT_OTHER)
    return MirrorResult(uri, commit, len(entries), total, len(entries), manifest)


def require_mirror(outputs: Outputs, repo_id: str, commit: str, repo_type: str = "model",
                   token=None) -> tuple[dict, str]:
    """For `submit --token-delivery mirror`: the verified manifest of exactly that commit and its SHA-256 (which the
    job checks again before training), or a clear refusal. With `token`, every file is proven against the hashes
    the Hub publishes for that commit (hub_files)."""
    found = find_manifest(outputs, repo_id, commit, repo_type)
    kind = "--dataset" if repo_type == "dataset" else "--model"
    if found is None:
        raise NotFound(f"no mirror of {repo_id}@{commit[:12]} in {outputs.mirror_bucket}",
                       f"run `hfgate mirror {kind} {repo_id} --revision {commit}` first (once; it needs the token)")
    manifest, digest = found
    problems = verify(outputs, manifest, hub=hub_files(token, repo_id, commit, repo_type) if token else None)
    if problems:
        raise HfgateError(f"the mirror of {repo_id}@{commit[:12]} does not verify: {problems[0]}",
                          f"delete {outputs.mirror_bucket}/{prefix_for(repo_id, commit, repo_type)} and run"
                          f" `hfgate mirror {kind} {repo_id} --revision {commit}` again", exit_code=EXIT_OTHER)
    return manifest, digest

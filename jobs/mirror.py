"""Import gated weights once: download a repo snapshot with the token, upload it to the artifacts bucket under
`models/<id>/<commit>/` (datasets: `datasets/<id>/<commit>/`) with a manifest, verify it. Jobs then train from the
bucket with no token and no Hugging Face egress at all (`submit --token-delivery mirror`).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
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


def find_manifest(outputs: Outputs, repo_id: str, revision: str = "main", repo_type: str = "model",
                  client=None) -> dict | None:
    """The newest manifest for this repo whose commit or requested revision matches."""
    from jobs import endpoints
    client = client or endpoints.storage(outputs.project_id)
    base = f"{'datasets' if repo_type == 'dataset' else 'models'}/{repo_id}/"
    found = []
    for blob in client.list_blobs(outputs.artifacts_bucket_name, prefix=base):
        if blob.name.endswith("/" + MANIFEST) and blob.name.count("/") == base.count("/") + 1:
            m = json.loads(blob.download_as_bytes())
            if revision in (m.get("commit"), m.get("revision")):
                found.append(m)
    return max(found, key=lambda m: m.get("mirrored_at", "")) if found else None


def verify(outputs: Outputs, manifest: dict, client=None) -> list[str]:
    """Problems with a mirror: every file of the manifest present with its size and CRC32C."""
    from jobs import endpoints
    client = client or endpoints.storage(outputs.project_id)
    prefix = prefix_for(manifest["id"], manifest["commit"], manifest.get("type", "model"))
    blobs = {b.name.removeprefix(prefix): b for b in client.list_blobs(outputs.artifacts_bucket_name, prefix=prefix)}
    problems = []
    for f in manifest["files"]:
        b = blobs.get(f["path"])
        if b is None:
            problems.append(f"{f['path']} is missing")
        elif b.size != f["size"]:
            problems.append(f"{f['path']} has {b.size} bytes, the manifest says {f['size']}")
        elif f.get("crc32c") and b.crc32c and b.crc32c != f["crc32c"]:
            problems.append(f"{f['path']} does not match its checksum")
    return problems


def mirror(outputs: Outputs, token, repo_id: str, revision: str = "main", repo_type: str = "model",
           allow_pickle: bool = False, who: str = "", out=sys.stderr) -> MirrorResult:
    """Preflight is the caller's; this resolves the commit, downloads, uploads, writes and verifies the manifest."""
    from huggingface_hub import HfApi, snapshot_download

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
    bucket = client.bucket(outputs.artifacts_bucket_name)
    prefix = prefix_for(repo_id, commit, repo_type)
    uri = f"{outputs.artifacts_bucket}/{prefix}"

    existing = bucket.blob(prefix + MANIFEST)
    if existing.exists():
        manifest = json.loads(existing.download_as_bytes())
        problems = verify(outputs, manifest, client)
        if not problems:
            print(f"{repo_id}@{commit[:12]} is already mirrored at {uri} (verified; nothing uploaded)", file=out)
            return MirrorResult(uri, commit, len(manifest["files"]), sum(f["size"] for f in manifest["files"]), 0,
                                manifest)
        print(f"existing mirror is incomplete ({problems[0]}); uploading again", file=out)

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
    problems = verify(outputs, manifest, client)
    if problems:
        raise HfgateError(f"the mirror at {uri} does not verify: {problems[0]}", "run `hfgate mirror` again",
                          exit_code=EXIT_OTHER)
    return MirrorResult(uri, commit, len(entries), total, len(entries), manifest)


def require_mirror(outputs: Outputs, repo_id: str, revision: str, repo_type: str = "model") -> dict:
    """For `submit --token-delivery mirror`: the verified manifest, or a clear refusal."""
    manifest = find_manifest(outputs, repo_id, revision, repo_type)
    kind = "--dataset" if repo_type == "dataset" else "--model"
    if manifest is None:
        raise NotFound(f"no mirror of {repo_id}@{revision} in {outputs.artifacts_bucket}",
                       f"run `hfgate mirror {kind} {repo_id} --revision {revision}` first (once; it needs the token)")
    problems = verify(outputs, manifest)
    if problems:
        raise HfgateError(f"the mirror of {repo_id}@{manifest['commit'][:12]} does not verify: {problems[0]}",
                          f"run `hfgate mirror {kind} {repo_id}` again", exit_code=EXIT_OTHER)
    return manifest

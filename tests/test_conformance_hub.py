"""Code nobody here wrote, pointed at the local Hub with only an endpoint change: the calls a user's job script
makes through huggingface_hub, the `hf` CLI, datasets and transformers for a gated model, each compared with what
the real Hub answers (status codes, error types). Plus HTTP/1.1 framing: an unsupported call never corrupts the
next request on the same connection."""
from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

from tests.conftest import ROOT

pytest.importorskip("transformers", reason="needs the train extra (make test installs it)")


@pytest.fixture(scope="module")
def hub(cloud, tiny_model):
    from localcloud.tinymodel import build_dataset
    model, dataset = f"hfgate-demo/conformance-lm-{time.time_ns()}", f"hfgate-demo/conformance-chat-{time.time_ns()}"
    files = tiny_model()
    files["nested/notes.txt"] = b"a file in a folder"
    repo = cloud.hub_state.add_repo(model, files, gated="auto")
    repo.access["alice"] = "accepted"
    cloud.hub_state.add_repo(dataset, build_dataset(), type="dataset")
    return cloud, model, dataset, cloud.hub_tokens["alice-read"]


def run(cloud, code: str, tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, **cloud.env(), "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("HF_TOKEN", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


CLIENT_CALLS = r"""
import json, sys, os
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, EntryNotFoundError
model, dataset, token, other = sys.argv[1:5]
api, out = HfApi(), {}
out["whoami"] = api.whoami(token=token)["name"]
info = api.model_info(model, files_metadata=True, token=token)
out["files_metadata"] = sorted((s.rfilename, s.size is not None) for s in info.siblings)[:3]
out["sha"] = info.sha
out["tree"] = sorted(e.path for e in api.list_repo_tree(model, recursive=True, token=token))
out["paths_info"] = [(e.path, type(e).__name__) for e in api.get_paths_info(model, ["config.json", "nested", "missing.bin"], token=token)]
api.auth_check(model, token=token)
try:
    api.auth_check(model, token=other)
    out["auth_other"] = "granted"
except GatedRepoError as e:
    out["auth_other"] = ["GatedRepoError", e.response.status_code]
p1 = hf_hub_download(model, "config.json", token=token)
p2 = hf_hub_download(model, "config.json", token=token)
out["download_twice_same_file"] = p1 == p2 and os.path.exists(p1)
try:
    hf_hub_download(model, "no-such-file.json", token=token)
except EntryNotFoundError as e:
    out["missing_file"] = ["EntryNotFoundError", e.response.status_code]
try:
    api.model_info("hfgate-demo/no-such-model", token=token)
except RepositoryNotFoundError as e:
    out["missing_repo"] = ["RepositoryNotFoundError", e.response.status_code]
snap = snapshot_download(model, allow_patterns=["*.json"], token=token)
out["snapshot_patterns"] = sorted(f for f in os.listdir(snap) if not f.startswith("."))
fs = HfFileSystem(token=token)
out["fs_ls"] = sorted(os.path.basename(p) for p in fs.ls(model, detail=False))
with fs.open(f"{model}/config.json", "rb") as f:
    out["fs_read"] = json.loads(f.read())["model_type"]
print(json.dumps(out))
"""


def test_huggingface_hub_calls_behave_as_on_the_real_hub(hub, tmp_path):
    cloud, model, dataset, token = hub
    other = cloud.hub_tokens["bob-read"] if "bob-read" in cloud.hub_tokens else next(
        v for k, v in cloud.hub_tokens.items() if not k.startswith("alice"))
    proc = run(cloud, CLIENT_CALLS, tmp_path, model, dataset, token, other)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["whoami"] == "alice"
    assert all(has_size for _, has_size in out["files_metadata"])
    assert "nested/notes.txt" in out["tree"] and "config.json" in out["tree"]
    assert out["paths_info"] == [["config.json", "RepoFile"], ["nested", "RepoFolder"]]   # missing paths left out
    assert out["auth_other"] == ["GatedRepoError", 403]
    assert out["download_twice_same_file"] is True
    assert out["missing_file"] == ["EntryNotFoundError", 404]
    assert out["missing_repo"] == ["RepositoryNotFoundError", 404]
    assert out["snapshot_patterns"] and all(f.endswith(".json") for f in out["snapshot_patterns"])
    assert "config.json" in out["fs_ls"] and out["fs_read"] == "llama"


def test_the_hf_cli_downloads_and_says_who_you_are(hub, tmp_path):
    cloud, model, _, token = hub
    hf = os.path.join(os.path.dirname(sys.executable), "hf")
    env = {**os.environ, **cloud.env(), "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": token}
    who = subprocess.run([hf, "auth", "whoami"], env=env, capture_output=True, text=True, timeout=120)
    assert who.returncode == 0 and "alice" in who.stdout, who.stderr
    got = subprocess.run([hf, "download", model, "config.json", "--local-dir", str(tmp_path / "dl")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert json.loads((tmp_path / "dl" / "config.json").read_text())["model_type"] == "llama"


def test_datasets_and_transformers_load_the_gated_repos(hub, tmp_path):
    cloud, model, dataset, token = hub
    code = ("import sys\nfrom datasets import load_dataset\nfrom transformers import AutoModelForCausalLM, "
            "AutoTokenizer\nm, d, t = sys.argv[1:4]\nds = load_dataset(d, split='train', token=t)\n"
            "tok = AutoTokenizer.from_pretrained(m, token=t)\nmodel = AutoModelForCausalLM.from_pretrained(m, token=t)\n"
            "print(len(ds), type(model).__name__, tok('hello')['input_ids'][:1] != [])")
    proc = run(cloud, code, tmp_path, model, dataset, token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n, cls, ok = proc.stdout.split()[-3:]
    assert int(n) > 0 and cls == "LlamaForCausalLM" and ok == "True"


def test_an_unsupported_call_does_not_corrupt_the_next_request_on_the_connection(hub):
    cloud, model, _, token = hub
    url = urllib.parse.urlsplit(cloud.hub.url)
    assert url.scheme == "https"                     # like huggingface.co, trusted through the local CA
    conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=10,
                                       context=ssl.create_default_context(cafile=cloud.env()["SSL_CERT_FILE"]))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-www-form-urlencoded"}
    for method, path in (("POST", "/api/no-such-route"), ("PUT", f"/api/models/{model}/settings"),
                         ("DELETE", "/api/nothing"), ("PATCH", "/whatever")):
        conn.request(method, path, body="paths=config.json&expand=false", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 404 and json.loads(body)["error"], (method, path, resp.status, body[:200])
        conn.request("GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})   # same connection
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["name"] == "alice"
    conn.close()


WRITE_CALLS = r"""
import json, sys, os, hashlib
from huggingface_hub import HfApi, CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError
folder, repo, read_token, write_token, fg_acme, fg_one, bob = sys.argv[1:8]
api, out = HfApi(), {}
def status(fn):
    try:
        fn()
        return 200
    except HfHubHTTPError as e:
        return e.response.status_code
out["create_read_token"] = status(lambda: api.create_repo(repo, private=True, token=read_token))
out["create_other_org"] = status(lambda: api.create_repo(repo, private=True, token=bob))
url = api.create_repo(repo, private=True, token=write_token)
out["created"] = [url.repo_id, api.model_info(repo, token=write_token).private]
out["create_again_exist_ok"] = api.create_repo(repo, private=True, exist_ok=True, token=write_token).repo_id
out["create_again_409"] = status(lambda: api.create_repo(repo, token=write_token))
info = api.upload_folder(folder_path=folder, repo_id=repo, token=write_token, commit_message="first")
out["first_commit"] = len(info.oid)
files = {e.path: e for e in api.list_repo_tree(repo, recursive=True, token=write_token)}
local = {}
for root, _, names in os.walk(folder):
    for n in names:
        p = os.path.join(root, n)
        local[os.path.relpath(p, folder)] = open(p, "rb").read()
out["tree_matches"] = all(
    (files[p].lfs.sha256 == hashlib.sha256(d).hexdigest()) if files[p].lfs else
    (files[p].blob_id == hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()) for p, d in local.items())
out["lfs_files"] = sorted(p for p in local if files[p].lfs)
again = api.upload_folder(folder_path=folder, repo_id=repo, token=write_token, commit_message="again")
out["same_again_no_commit"] = again.oid == info.oid
ops = [CommitOperationAdd("extra.txt", b"one more"), CommitOperationDelete("notes.txt")]
c2 = api.create_commit(repo, ops, commit_message="edit", token=write_token, parent_commit=info.oid)
tree2 = sorted(e.path for e in api.list_repo_tree(repo, recursive=True, token=write_token))
out["edit"] = ["extra.txt" in tree2, "notes.txt" not in tree2, c2.oid != info.oid]
out["stale_parent"] = status(lambda: api.create_commit(repo, [CommitOperationAdd("x.txt", b"x")],
                                                       commit_message="x", token=write_token, parent_commit=info.oid))
out["commit_read_token"] = status(lambda: api.create_commit(repo, [CommitOperationAdd("y.txt", b"y")],
                                                            commit_message="y", token=read_token))
out["fg_acme_commit"] = status(lambda: api.create_commit(repo, [CommitOperationAdd("z.txt", b"z")],
                                                         commit_message="z", token=fg_acme))
out["fg_one_other_repo"] = status(lambda: api.create_repo(repo + "-other", private=True, token=fg_one))
out["private_hidden_from_bob"] = status(lambda: api.model_info(repo, token=bob))
print(json.dumps(out))
"""


def test_the_write_api_behaves_as_huggingface_hub_expects(hub, tmp_path):
    """create_repo, upload_folder (preupload, LFS batch, presigned PUT, verify, NDJSON commit), create_commit with
    deletions and a parent commit, and the status codes of tokens that may not write, through huggingface_hub."""
    cloud = hub[0]
    folder = tmp_path / "run"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(5000))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "notes.txt").write_text("small")
    (folder / "sub" / "big.bin").write_bytes(os.urandom(2048))
    repo = f"acme/write-conformance-{time.time_ns()}"
    t = cloud.hub_tokens
    seen = len(cloud.hub_state.log)          # the Hub is shared by this file's tests: count this test's uploads only
    proc = run(cloud, WRITE_CALLS, tmp_path, str(folder), repo, t["alice-read"], t["alice-write"],
               t["alice-fg-write-acme"], t["alice-fg-write-one"], t["bob-write"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["create_read_token"] == 403 and out["create_other_org"] == 403
    assert out["created"] == [repo, True] and out["create_again_exist_ok"] == repo
    assert out["create_again_409"] == 409
    assert out["first_commit"] == 40 and out["tree_matches"] is True
    assert out["lfs_files"] == ["model.safetensors", "sub/big.bin"]
    assert out["same_again_no_commit"] is True
    assert out["edit"] == [True, True, True]
    assert out["stale_parent"] == 412
    assert out["commit_read_token"] == 403
    assert out["fg_acme_commit"] == 200
    assert out["fg_one_other_repo"] == 403
    assert out["private_hidden_from_bob"] == 404
    uploads = [r for r in cloud.hub_state.log[seen:]
               if r["method"] == "PUT" and r["path"].startswith("cdn:/lfs-upload/")]
    assert len(uploads) == 2 and not any(r["authorization"] for r in uploads)


# Xet: the storage of new uploads on the Hub (stacks/hub_protocol.py), read by hf-xet, a required dependency ----------
def run_xet(cloud, code: str, tmp_path, *args) -> subprocess.CompletedProcess:
    """As `run`, with Xet on: huggingface_hub hands Xet-backed files to hf-xet, as it does by default."""
    env = {**os.environ, **cloud.env(), "HF_HOME": str(tmp_path / "hf-home")}
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_DISABLE_XET", None)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


XET_DOWNLOADS = r"""
import hashlib, json, os, sys
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.utils._xet import refresh_xet_connection_info
from datasets import load_dataset
from transformers import AutoModelForCausalLM
model, dataset, token = sys.argv[1:4]
out = {}
meta = get_hf_file_metadata(hf_hub_url(model, "model.safetensors"), token=token)
out["xet_hash"] = meta.xet_file_data.file_hash if meta.xet_file_data else None
out["refresh_route"] = meta.xet_file_data.refresh_route if meta.xet_file_data else None
info = refresh_xet_connection_info(file_data=meta.xet_file_data, headers={"authorization": f"Bearer {token}"})
out["cas"], out["expires_in"] = info.endpoint, info.expiration_unix_epoch
p = hf_hub_download(model, "model.safetensors", token=token)
out["model_sha256"] = hashlib.sha256(open(p, "rb").read()).hexdigest()
snap = snapshot_download(dataset, repo_type="dataset", token=token)
out["dataset_files"] = {f: hashlib.sha256(open(os.path.join(snap, f), "rb").read()).hexdigest()
                        for f in os.listdir(snap) if not f.startswith(".")}
out["rows"] = len(load_dataset(dataset, split="train", token=token))
out["model_class"] = type(AutoModelForCausalLM.from_pretrained(model, token=token)).__name__
print(json.dumps(out))
"""


def test_xet_backed_files_download_through_hf_xet(hub, tmp_path):
    """The real client with Xet on: the Hub's HEAD carries the Xet hash and refresh route, the token route answers
    the CAS url, hf-xet reads the reconstruction from the CAS and the bytes from the transfer host (no Hub token
    leaves huggingface.co), and the files are byte for byte the repository's."""
    import hashlib
    cloud, model, dataset, token = hub
    before = len(cloud.hub_state.log)
    proc = run_xet(cloud, XET_DOWNLOADS, tmp_path, model, dataset, token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    repo = cloud.hub_state.repos[model]
    weights = repo.commits[repo.refs["main"]]["model.safetensors"]
    assert out["xet_hash"] == cloud.hub_state.xet_hash(repo, weights)
    assert out["refresh_route"].endswith(f"/api/models/{model}/xet-read-token/{repo.refs['main']}")
    assert out["cas"] == cloud.hub_state.xet.url and out["expires_in"] > time.time()
    assert out["model_sha256"] == hashlib.sha256(weights).hexdigest()
    ds = cloud.hub_state.repos[dataset]
    files = ds.commits[ds.refs["main"]]
    assert out["dataset_files"] == {f: hashlib.sha256(b).hexdigest() for f, b in files.items() if "/" not in f
                                    and not f.startswith(".")}
    assert out["rows"] > 0 and out["model_class"] == "LlamaForCausalLM"
    log = cloud.hub_state.log[before:]
    by_host: dict[str, set] = {}
    for e in log:
        by_host.setdefault(e["host"], set()).add((e["method"], e["wire_path"].split("/")[1]))
    assert ("GET", "api") in by_host["huggingface.co"]
    assert ("GET", "v2") in by_host["cas-server.xethub.hf.co"]
    assert ("GET", "xorbs") in by_host["transfer.xethub.hf.co"]
    assert not [e for e in log if e["host"] in ("cdn-lfs-us-1.hf.co", "cas-bridge.xethub.hf.co")]   # Xet, not LFS
    xet_side = [e for e in log if e["host"].endswith("xethub.hf.co")]
    assert not any(e["hub_token"] for e in xet_side)
    assert not any(e["authorization"] for e in xet_side if e["host"] == "transfer.xethub.hf.co")
    assert {e["repo"] for e in xet_side if e["host"] == "cas-server.xethub.hf.co"} <= {model, dataset}


def test_without_xet_the_same_file_comes_from_the_bridge(hub, tmp_path):
    """A client with Xet off (HF_HUB_DISABLE_XET) follows resolve's redirect to the Xet bridge, without the token."""
    cloud, model, _, token = hub
    before = len(cloud.hub_state.log)
    code = ("import os, sys\nos.environ['HF_HUB_DISABLE_XET'] = '1'\nfrom huggingface_hub import hf_hub_download\n"
            "print(len(open(hf_hub_download(sys.argv[1], 'model.safetensors', token=sys.argv[2]), 'rb').read()))")
    proc = run(cloud, code, tmp_path, model, token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bridge = [e for e in cloud.hub_state.log[before:] if e["host"] == "cas-bridge.xethub.hf.co"]
    assert bridge and all(e["wire_path"].startswith("/xet-bridge-us/") and not e["authorization"] for e in bridge)
    assert not [e for e in cloud.hub_state.log[before:] if e["host"].endswith(("cas-server.xethub.hf.co",
                                                                               "transfer.xethub.hf.co"))]


XET_REFUSALS = r"""
import json, sys
import httpx2
from huggingface_hub.utils import hf_raise_for_status
from huggingface_hub.utils._xet import XetFileData, refresh_xet_connection_info
endpoint, cases = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, (route, token) in cases.items():
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        refresh_xet_connection_info(file_data=XetFileData("0" * 64, endpoint + route), headers=headers)
        out[name] = "granted"
    except Exception as e:
        out[name] = [type(e).__name__, getattr(getattr(e, "response", None), "status_code", None)]
print(json.dumps(out))
"""


def test_the_xet_token_route_refuses_as_resolve_does(hub, tmp_path):
    """The token route is a download: gated and private repositories refuse it exactly as their files."""
    cloud, model, _, token = hub
    toks = cloud.hub_tokens
    private = f"acme/xet-private-{time.time_ns()}"
    cloud.hub_state.add_repo(private, {"weights.bin": b"\0" * 4096}, private=True, members={"alice"})
    route = f"/api/models/{model}/xet-read-token/main"
    cases = {"gated_accepted": (route, token), "gated_anonymous": (route, None),
             "gated_not_accepted": (route, toks["bob-read"]),
             "gated_fine_grained_without_gated_read": (route, toks["alice-fg-nogated"]),
             "private_member": (f"/api/models/{private}/xet-read-token/main", token),
             "private_other": (f"/api/models/{private}/xet-read-token/main", toks["bob-read"]),
             "private_anonymous": (f"/api/models/{private}/xet-read-token/main", None),
             "revoked": (route, toks["alice-revoked"]),
             "missing_revision": (f"/api/models/{model}/xet-read-token/no-such-branch", token)}
    proc = run(cloud, XET_REFUSALS, tmp_path, cloud.hub.url, json.dumps(cases))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"gated_accepted": "granted", "gated_anonymous": ["GatedRepoError", 401],
                   "gated_not_accepted": ["GatedRepoError", 403],
                   "gated_fine_grained_without_gated_read": ["GatedRepoError", 403],
                   "private_member": "granted", "private_other": ["RepositoryNotFoundError", 404],
                   "private_anonymous": ["RepositoryNotFoundError", 401], "revoked": ["HfHubHTTPError", 401],
                   "missing_revision": ["RevisionNotFoundError", 404]}


def test_a_xet_token_reads_only_its_repository(hub):
    """The CAS answers a file's reconstruction only to a token of a repository holding that file; the transfer host
    serves only signed URLs."""
    import ssl
    cloud, model, dataset, _ = hub
    state = cloud.hub_state
    repo = state.repos[model]
    weights_hash = state.xet_hash(repo, repo.commits[repo.refs["main"]]["model.safetensors"])
    ctx = ssl.create_default_context(cafile=cloud.tls.trust_file)
    cas = urllib.parse.urlsplit(state.xet.url)

    def get(path, token=None, rng=None):
        conn = http.client.HTTPSConnection(cas.hostname, cas.port, context=ctx, timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if rng:
            headers["Range"] = rng
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    own, other = state.xet.issue_token("model", model).value, state.xet.issue_token("dataset", dataset).value
    assert get(f"/v1/reconstructions/{weights_hash}")[0] == 401
    assert get(f"/v1/reconstructions/{weights_hash}", other)[0] == 404
    status, body = get(f"/v1/reconstructions/{weights_hash}", own, "bytes=0-99")
    assert status == 200
    answer = json.loads(body)
    (fetch,) = next(iter(answer["fetch_info"].values()))
    signed = urllib.parse.urlsplit(fetch["url"])
    rng = f"bytes={fetch['url_range']['start']}-{fetch['url_range']['end']}"
    status, xorb = get(f"{signed.path}?{signed.query}", rng=rng)
    assert status == 206 and xorb[8:108] == repo.commits[repo.refs["main"]]["model.safetensors"][:100]
    assert get(f"{signed.path}?{signed.query.replace('Signature=', 'Signature=0')}", rng=rng)[0] == 403
    assert get(f"/v1/reconstructions/{weights_hash}", own, "bytes=999999999-")[0] == 416


def test_writes_a_stale_parent_commit_and_a_repository_scoped_token_as_the_hub_answers(cloud):
    """huggingface_hub against the local Hub's write API, as against the real one. create_commit with a
    parent_commit that is no longer the head: 412 "A commit has happened since. Please refresh and try again."
    (what huggingface_hub's own test_create_commit_conflict expects from the Hub); the head's shorthand is a valid
    parent. A fine-grained token scoped to one model repository reads and writes that existing repository and
    creates no repository (create_repo: 403; exist_ok on its own repository falls back to repo_info, as the client
    does for a token without the namespace's write)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError
    state, api = cloud.hub_state, HfApi()
    repo, missing = f"acme/conformance-write-{time.time_ns()}", f"acme/conformance-missing-{time.time_ns()}"
    state.add_repo(repo, {"notes.txt": b"first"}, private=True, members={"acme"})
    scoped = state.add_token("alice", "fineGrained", "conformance-one-repo", scoped=[
        {"entity": {"type": "model", "name": repo}, "permissions": ["repo.content.read", "repo.write"]}]).value
    head = api.model_info(repo, token=scoped).sha
    api.create_commit(repo, [CommitOperationAdd("a.txt", b"a")], commit_message="a", token=scoped,
                      parent_commit=head[:7])
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo, [CommitOperationAdd("b.txt", b"b")], commit_message="b", token=scoped,
                          parent_commit=head)
    assert err.value.response.status_code == 412
    assert "A commit has happened since. Please refresh and try again." in str(err.value)
    files = state.repos[repo].commits[state.repos[repo].refs["main"]]
    assert set(files) == {"notes.txt", "a.txt"}
    assert str(api.create_repo(repo, private=True, exist_ok=True, token=scoped)).endswith(repo)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(missing, private=True, exist_ok=True, token=scoped)
    assert err.value.response.status_code == 403 and missing not in state.repos


def test_a_large_xet_file_is_reconstructed_range_by_range(hub, tmp_path):
    """hf-xet asks the CAS for a file's reconstruction in blocks of file bytes (a Range each); the terms of a block
    start at a chunk boundary and the offset into the first chunk is skipped: the bytes still come out exact."""
    import hashlib
    import random
    cloud, _, _, token = hub
    repo_id = f"hfgate-demo/xet-large-{time.time_ns()}"
    data = random.Random(7).randbytes(700_001)          # 11 chunks of 64 KiB, the last one short
    cloud.hub_state.add_repo(repo_id, {"weights.bin": data})
    before = len(cloud.hub_state.log)
    code = ("import hashlib, os, sys\nos.environ['HF_XET_RECONSTRUCTION_MIN_RECONSTRUCTION_FETCH_SIZE'] = '100000'\n"
            "os.environ['HF_XET_RECONSTRUCTION_MAX_RECONSTRUCTION_FETCH_SIZE'] = '150000'\n"
            "from huggingface_hub import hf_hub_download\n"
            "print(hashlib.sha256(open(hf_hub_download(sys.argv[1], 'weights.bin', token=sys.argv[2]), 'rb')"
            ".read()).hexdigest())")
    proc = run_xet(cloud, code, tmp_path, repo_id, token)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == hashlib.sha256(data).hexdigest()
    blocks = [e for e in cloud.hub_state.log[before:] if e["host"] == "cas-server.xethub.hf.co"]
    assert len(blocks) > 2, "the file was asked for in several ranges"

"""A faithful local Hugging Face Hub (per shared/reference/hub-protocol.md, checked against huggingface_hub 2.x).

whoami-v2, model info by revision, paginated trees, auth-check, resolve (HEAD/GET) with X-Repo-Commit, ETags and
sizes, large files redirected to a second "CDN" origin that serves without the authorization header, Xet downloads
(X-Xet-Hash and the refresh route on HEAD, the xet-read-token route; the CAS is localcloud/xet.py), model search,
the Jobs API, exact status codes with X-Error-Code / X-Error-Message, a request log, and per-route fault knobs.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from localcloud.loopback import serve
from localcloud.xet import XetStore, start_xet

LFS_THRESHOLD = 1024   # files at least this big are LFS: served through the CDN redirect


def git_blob_id(data: bytes) -> str:
    """A file's `oid` on the Hub: its git blob id (SHA-1 of "blob <size>\\0" + content)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file committed in place of a large file (the LFS spec, v1)."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def file_entry(path: str, data: bytes, xet_hash: str | None = None) -> dict:
    """A file as the tree and paths-info endpoints list it: an LFS file's oid is its pointer's blob id; one stored
    with Xet also has its `xetHash` (huggingface_hub's RepoFile.xet_hash)."""
    if len(data) >= LFS_THRESHOLD:
        pointer = lfs_pointer(data)
        entry = {"type": "file", "oid": git_blob_id(pointer), "size": len(data), "path": path,
                 "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}}
        if xet_hash:
            entry["xetHash"] = xet_hash
        return entry
    return {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
TREE_PAGE = 50
# What the Hub commits in a new repository: large and binary formats go to LFS (abridged).
GITATTRIBUTES = (b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                 b"*.pt filter=lfs diff=lfs merge=lfs -text\n*.model filter=lfs diff=lfs merge=lfs -text\n")


@dataclass
class Token:
    value: str
    owner: str
    role: str                              # read | write | fineGrained
    name: str
    can_read_gated: bool = False           # fine-grained: "read access to public gated repos"
    scoped: list[dict] = field(default_factory=list)   # fine-grained: [{"entity": {"type","name"}, "permissions"}]
    revoked: bool = False


@dataclass
class Repo:
    id: str
    type: str = "model"                    # model | dataset
    private: bool = False
    gated: bool | str = False              # False | "auto" | "manual"
    license: str = "apache-2.0"
    members: set[str] = field(default_factory=set)     # users/orgs that own or may read a private repo
    access: dict[str, str] = field(default_factory=dict)  # user -> accepted | pending | rejected
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)                  # branch/tag -> sha
    history: list[dict] = field(default_factory=list)                   # commits made through the write API
    # Where its large (LFS-tracked) files live: Xet, the Hub's storage for new repositories since May 2025 (see
    # stacks/hub_protocol.py), or plain LFS behind the CDN.
    xet: bool = True

    def commit(self, files: dict[str, bytes], revision: str = "main", replace: bool = False) -> str:
        """A new commit on `revision`: `files` on top of its head (or exactly `files`, with replace)."""
        base = {} if replace else dict(self.commits.get(self.refs.get(revision, ""), {}))
        base.update(files)
        digest = hashlib.sha1(json.dumps(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in base.items()))
                              .encode() + self.id.encode() + revision.encode() + str(len(self.commits)).encode())
        sha = digest.hexdigest()
        self.commits[sha] = base
        self.refs[revision] = sha
        return sha


@dataclass
class Fault:
    latency_s: float = 0.0
    fail_503: int = 0          # the next N requests get 503
    rate_limit: int = 0        # the next N requests get 429 with a RateLimit header
    drop: int = 0              # the next N requests have their connection closed without an answer


class HubState:
    def __init__(self) -> None:
        self.users: dict[str, dict] = {}            # name -> {"orgs": [...]}
        self.tokens: dict[str, Token] = {}
        self.repos: dict[str, Repo] = {}
        self.jobs: dict[str, dict] = {}
        self.log: list[dict] = []                   # every request: method, path, user, host, wire_path, UA
        # The public hosts this Hub and its CDN stand in for: the log reads as traffic to them (the review replays
        # it through the Secure Web Proxy rules).
        self.public_hosts = {"hub": "huggingface.co", "cdn": "cdn-lfs-us-1.hf.co", "xet-bridge": "cas-bridge.xethub.hf.co",
                             "xet-cas": "cas-server.xethub.hf.co", "xet-transfer": "transfer.xethub.hf.co"}
        self.faults: dict[str, Fault] = {}          # route prefix -> fault ("" = every route)
        self.lock = threading.Lock()
        self.cdn_key = secrets.token_bytes(16)
        self.blobs: dict[str, bytes] = {}
        self.job_runner = None                      # set by the cloud: runs a job's command locally
        self.xet = XetStore()                       # Xet-backed files, their xorbs and the Xet tokens handed out

    def add_user(self, name: str, orgs: list[str] | None = None) -> None:
        self.users[name] = {"orgs": list(orgs or [])}

    def add_token(self, owner: str, role: str, name: str, **kw) -> Token:
        from localcloud.state import hf_token
        token = Token(hf_token(), owner, role, name, **kw)
        self.tokens[token.value] = token
        return token

    def add_repo(self, repo_id: str, files: dict[str, bytes], **kw) -> Repo:
        repo = self.repos.get(repo_id) or Repo(repo_id, **kw)
        self.repos[repo_id] = repo
        repo.commit(files)
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return repo

    def xet_hash(self, repo: Repo, data: bytes) -> str | None:
        """The Xet hash of a file of `repo`, None when it is not stored with Xet (small files stay in git)."""
        return self.xet.add(data).file_hash if repo.xet and len(data) >= LFS_THRESHOLD else None

    def repo_has_xet_file(self, kind: str, repo_id: str, file_hash: str) -> bool:
        repo = self.repos.get(repo_id)
        return repo is not None and repo.type == kind and any(
            self.xet_hash(repo, data) == file_hash for files in list(repo.commits.values()) for data in files.values())

    def set_fault(self, route: str = "", **kw) -> None:
        with self.lock:
            self.faults[route] = Fault(**kw)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def requests_by(self, user: str | None = None, path_prefix: str = "") -> list[dict]:
        return [r for r in self.log if (user is None or r["user"] == user) and r["path"].startswith(path_prefix)]


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def start_hub(state: HubState, tls_context=None):
    """The Hub and its CDN, over HTTPS like huggingface.co and its CDN when `tls_context` is given (the local cloud
    always gives one: clients trust its CA through SSL_CERT_FILE / REQUESTS_CA_BUNDLE)."""
    cdn = serve(_cdn_handler(state), tls_context)
    start_xet(state, tls_context)
    hub = serve(_hub_handler(state, cdn), tls_context)
    return hub, cdn


def _cdn_handler(state: HubState):
    class Cdn(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            oid = url.path.rsplit("/", 1)[-1]
            expires = int(q.get("Expires", ["0"])[0])
            good = hmac.compare_digest(q.get("Signature", [""])[0], _sign(state, oid, expires))
            # A Xet file's bytes for a client without Xet come from the bridge (the same signed-URL contract).
            host = state.public_hosts["xet-bridge" if url.path.startswith("/xet-bridge-us/") else "cdn"]
            state.log.append({"method": "GET", "path": "cdn:" + url.path, "user": None, "t": time.time(),
                              "authorization": self.headers.get("authorization") is not None,
                              "host": host, "wire_path": url.path,
                              "user_agent": self.headers.get("User-Agent", "")})
            if not good or expires < time.time() or oid not in state.blobs:
                body = b"<Error><Code>AccessDenied</Code></Error>"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                return self.wfile.write(body)
            data = state.blobs[oid]
            start, end = 0, len(data) - 1
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end = int(a or 0), int(b) if b else len(data) - 1
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            chunk = data[start:end + 1]
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("ETag", f'"{oid}"')
            self.end_headers()
            self.wfile.write(chunk)

        def do_PUT(self):
            """The presigned upload URL the LFS batch answer hands out (S3 in production): the body must hash to the
            object id it was signed for, or it is refused as S3 refuses a bad checksum; nothing is stored then."""
            url = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(url.query)
            oid = url.path.rsplit("/", 1)[-1]
            expires = int(q.get("Expires", ["0"])[0])
            good = hmac.compare_digest(q.get("Signature", [""])[0], _sign(state, "put:" + oid, expires))
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            state.log.append({"method": "PUT", "path": "cdn:" + url.path, "user": None, "t": time.time(),
                              "authorization": self.headers.get("authorization") is not None,
                              "host": state.public_hosts["cdn"], "wire_path": url.path,
                              "user_agent": self.headers.get("User-Agent", "")})
            if not good or expires < time.time():
                status, body = 403, b"<Error><Code>AccessDenied</Code></Error>"
            elif hashlib.sha256(data).hexdigest() != oid:
                status, body = 400, b"<Error><Code>BadDigest</Code></Error>"
            else:
                with state.lock:
                    state.blobs[oid] = data
                status, body = 200, b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 200:
                self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
            self.end_headers()
            self.wfile.write(body)

    return Cdn


def _sign(state: HubState, oid: str, expires: int) -> str:
    return hmac.new(state.cdn_key, f"{oid}:{expires}".encode(), hashlib.sha256).hexdigest()


def _hub_handler(state: HubState, cdn):
    hub_scheme = cdn.scheme

    class Hub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        # plumbing ------------------------------------------------------------------------------------------------
        def _token(self) -> Token | None:
            auth = self.headers.get("authorization") or ""
            if not auth.lower().startswith("bearer "):
                return None
            value = auth[7:].strip()
            token = state.tokens.get(value)
            if token is None or token.revoked:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            return token

        def _send(self, status: int, body=None, headers: dict | None = None, head_only: bool = False):
            data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
            self.send_response(status)
            if body is not None and not isinstance(body, bytes):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head_only:
                self.wfile.write(data)

        def _error(self, err: HubError, head_only=False):
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(err.status, {"error": err.message, **err.extra}, headers, head_only)

        def _fault(self, path: str) -> bool:
            with state.lock:
                matches = [(r, f) for r, f in state.faults.items() if path.startswith(r)]
                if not matches:
                    return False
                route, f = max(matches, key=lambda rf: len(rf[0]))
                latency = f.latency_s
                if f.drop > 0:
                    f.drop -= 1
                    action = "drop"
                elif f.fail_503 > 0:
                    f.fail_503 -= 1
                    action = "503"
                elif f.rate_limit > 0:
                    f.rate_limit -= 1
                    action = "429"
                else:
                    action = None
            if latency:
                time.sleep(latency)
            if action == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return True
            if action == "503":
                self._send(503, {"error": "Service Unavailable"}, {"X-Error-Message": "Service Unavailable"})
                return True
            if action == "429":
                self._send(429, {"error": "Too Many Requests"},
                           {"RateLimit": '"api";r=0;t=1', "RateLimit-Policy": '"fixed window";"api";q=1000;w=300',
                            "Retry-After": "1", "X-Error-Message": "You have exceeded our hourly quotas"})
                return True
            return False

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        # Every method gets an answer in the Hub's error shape (never http.server's 501), and every request body
        # is read before answering, so a keep-alive connection stays in step whatever route was hit.
        def do_PUT(self):
            self._dispatch("PUT")

        def do_DELETE(self):
            self._dispatch("DELETE")

        def do_PATCH(self):
            self._dispatch("PATCH")

        def do_OPTIONS(self):
            self._dispatch("OPTIONS")

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _dispatch(self, method: str):
            self.body = self._read_body()
            url = urllib.parse.urlsplit(self.path)
            path, query = urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query)
            user = None
            try:
                token = self._token()
                user = token.owner if token else None
            except HubError:
                token = None
            state.log.append({"method": method, "path": path, "user": user, "t": time.time(), "host": state.public_hosts["hub"],
                              "wire_path": url.path, "user_agent": self.headers.get("User-Agent", "")})
            if self._fault(path):
                return
            try:
                token = self._token()
                self._route(method, path, query, token)
            except HubError as err:
                self._error(err, head_only=method == "HEAD")

        def _route(self, method, path, query, token):
            if path == "/api/whoami-v2":
                return self._whoami(token)
            if path == "/api/models" and method == "GET":
                search = query.get("search", [""])[0].lower()
                found = [{"id": r.id, "private": r.private, "gated": r.gated} for r in state.repos.values()
                         if r.type == "model" and not r.private and search in r.id.lower()]
                return self._send(200, found)
            if path.startswith("/api/jobs/"):
                return self._jobs(method, path, token)
            if path == "/api/repos/create" and method == "POST":
                return self._create_repo(token)
            if path == "/api/validate-yaml" and method == "POST":
                return self._validate_yaml()
            if path.endswith(".git/info/lfs/objects/batch") and method == "POST":
                return self._lfs_batch(path, token)
            if path.startswith("/api/lfs-verify/") and method == "POST":
                return self._lfs_verify(path, token)
            for kind, prefix in (("model", "/api/models/"), ("dataset", "/api/datasets/")):
                if path.startswith(prefix):
                    return self._api_repo(kind, path[len(prefix):], query, token)
            if "/resolve/" in path:
                return self._resolve(method, path, token)
            raise HubError(404, None, "Not Found")

        # whoami ------------------------------------------------------------------------------------------------------
        def _whoami(self, token):
            if token is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            user = state.users.get(token.owner, {"orgs": []})
            access = {"displayName": token.name, "role": token.role}
            if token.role == "fineGrained":
                access["fineGrained"] = {"canReadGatedRepos": token.can_read_gated, "global": [],
                                         "scoped": token.scoped}
            self._send(200, {"type": "user", "id": hashlib.md5(token.owner.encode()).hexdigest()[:24],
                             "name": token.owner, "fullname": token.owner.title(),
                             "orgs": [{"name": o, "type": "org"} for o in user["orgs"]],
                             "auth": {"type": "access_token", "accessToken": access}})

        # repos -------------------------------------------------------------------------------------------------------
        def _find(self, kind: str, rest: str) -> tuple[Repo, str]:
            parts = rest.split("/")
            repo_id = "/".join(parts[:2]) if len(parts) >= 2 else parts[0]
            return state.repos.get(repo_id), "/".join(parts[2:])

        def _visible(self, kind, repo: Repo | None, repo_id: str, token: Token | None) -> Repo:
            if repo is None or repo.type != kind or (repo.private and not self._member(repo, token)):
                if token is None:
                    raise HubError(401, "RepoNotFound", f"Repository Not Found for url: {self.path}."
                                   " Please make sure you specified the correct `repo_id` and `repo_type`."
                                   " If you are trying to access a private or gated repo, make sure you are"
                                   " authenticated.")
                raise HubError(404, "RepoNotFound", f"Repository Not Found for url: {self.path}."
                               f" Please make sure you specified the correct `repo_id` and `repo_type`.")
            return repo

        def _member(self, repo: Repo, token: Token | None) -> bool:
            if token is None:
                return False
            if token.role == "fineGrained" and not self._scoped(repo, token):
                return False
            orgs = state.users.get(token.owner, {"orgs": []})["orgs"]
            return token.owner in repo.members or any(o in repo.members for o in orgs)

        def _scoped(self, repo: Repo, token: Token) -> bool:
            """Fine-grained tokens read only repos they are scoped to: the namespace (user or org), or the one
            repository itself (an entity of the repository's type, as the token settings page selects it)."""
            ns = repo.id.split("/")[0]
            return any("repo.content.read" in s.get("permissions", []) and (
                s["entity"]["name"] == ns and s["entity"].get("type") in ("user", "org") or
                s["entity"]["name"] == repo.id and s["entity"].get("type") == repo.type) for s in token.scoped)

        def _check_files_access(self, repo: Repo, token: Token | None, kind: str):
            """What auth-check and file downloads enforce (metadata stays visible for gated repos)."""
            if repo.private:
                return  # _visible already required membership
            if not repo.gated:
                return
            what = f"{kind} {repo.id}"
            if token is None:
                raise HubError(401, "GatedRepo", f"Access to {what} is restricted. You must have access to it and be"
                                                 " authenticated to access it. Please log in.")
            if self._member(repo, token):
                return
            if token.role == "fineGrained" and not token.can_read_gated:
                raise HubError(403, "GatedRepo", f"Access to {what} is restricted and you are not in the authorized"
                               " list, or your fine-grained token does not have the 'Read access to contents of all"
                               " public gated repos you can access' permission. Visit"
                               f" https://huggingface.co/{repo.id} to ask for access.")
            status = repo.access.get(token.owner)
            if status == "accepted":
                return
            if status == "pending":
                raise HubError(403, "GatedRepo", f"Your request to access {what} is awaiting a review from the repo"
                                                 " authors.")
            if status == "rejected":
                raise HubError(403, "GatedRepo", f"Your request to access {what} has been rejected by the repo's"
                                                 " authors.")
            raise HubError(403, "GatedRepo", f"Access to {what} is restricted and you are not in the authorized list."
                                             f" Visit https://huggingface.co/{repo.id} to ask for access.")

        def _revision(self, repo: Repo, rev: str) -> str:
            rev = urllib.parse.unquote(rev)
            if rev in repo.refs:
                return repo.refs[rev]
            if rev in repo.commits:
                return rev
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

        def _api_repo(self, kind, rest, query, token):
            repo, tail = self._find(kind, rest)
            repo_id = "/".join(rest.split("/")[:2])
            repo = self._visible(kind, repo, repo_id, token)
            if tail in ("", ) or tail.startswith("revision/"):
                sha = self._revision(repo, tail.split("/", 1)[1] if tail else "main")
                files = repo.commits[sha]
                siblings = []
                for p, data in sorted(files.items()):
                    entry = {"rfilename": p}
                    if query.get("blobs") == ["true"]:
                        entry["size"] = len(data)
                        listed = file_entry(p, data, state.xet_hash(repo, data))
                        entry["blobId"] = listed["oid"]
                        if "lfs" in listed:
                            entry["lfs"] = {"sha256": listed["lfs"]["oid"], "size": len(data),
                                            "pointerSize": listed["lfs"]["pointerSize"]}
                    siblings.append(entry)
                return self._send(200, {"_id": hashlib.md5(repo.id.encode()).hexdigest()[:24], "id": repo.id,
                                        "modelId": repo.id, "author": repo.id.split("/")[0], "sha": sha,
                                        "private": repo.private, "gated": repo.gated, "disabled": False,
                                        "downloads": 0, "likes": 0, "tags": [f"license:{repo.license}"],
                                        "cardData": {"license": repo.license}, "siblings": siblings,
                                        "lastModified": "2026-11-01T00:00:00.000Z"})
            if tail == "auth-check":
                self._check_files_access(repo, token, kind)
                return self._send(200, {"access": "granted"})
            if tail.startswith("xet-read-token/") and self.command == "GET":
                return self._xet_read_token(repo, kind, tail[len("xet-read-token/"):], token)
            if tail.startswith("tree/"):
                rev, _, sub = tail[5:].partition("/")
                sha = self._revision(repo, rev)
                return self._tree(repo, sha, sub, query)
            if tail.startswith("preupload/") and self.command == "POST":
                return self._preupload(repo, tail[len("preupload/"):], token)
            if tail.startswith("commit/") and self.command == "POST":
                return self._commit(repo, tail[len("commit/"):], token)
            if tail.startswith("paths-info/") and self.command == "POST":
                return self._paths_info(repo, self._revision(repo, tail[len("paths-info/"):]))
            raise HubError(404, None, "Not Found")

        def _paths_info(self, repo, sha):
            """POST paths-info/{revision}: form or JSON `paths` (repeated) and `expand`; one entry per existing path
            (a file as in the tree listing, or a folder), missing paths left out, as the Hub does."""
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype == "application/json":
                wanted = list((json.loads(self.body or b"{}") or {}).get("paths") or [])
            else:
                wanted = urllib.parse.parse_qs(self.body.decode()).get("paths", [])
            files = repo.commits[sha]
            out = []
            for path in dict.fromkeys(p.strip("/") for p in wanted):
                if path in files:
                    data = files[path]
                    out.append(file_entry(path, data, state.xet_hash(repo, data)))
                elif any(f.startswith(path + "/") for f in files):
                    out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                                "path": path})
            self._send(200, out)

        def _tree(self, repo, sha, sub, query):
            files = repo.commits[sha]
            entries, dirs = [], set()
            prefix = sub.rstrip("/") + "/" if sub else ""
            recursive = query.get("recursive") == ["true"]
            for p in sorted(files):
                if not p.startswith(prefix):
                    continue
                rel = p[len(prefix):]
                if "/" in rel and not recursive:
                    dirs.add(prefix + rel.split("/")[0])
                    continue
                for i in range(1, rel.count("/") + 1):
                    dirs.add(prefix + "/".join(rel.split("/")[:i]))
                data = files[p]
                entries.append(file_entry(p, data, state.xet_hash(repo, data)))
            entries = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                       for d in sorted(dirs)] + entries
            cursor = int(query.get("cursor", ["0"])[0])
            page = entries[cursor:cursor + TREE_PAGE]
            headers = {}
            if cursor + TREE_PAGE < len(entries):
                q = {k: v[0] for k, v in query.items()}
                q["cursor"] = str(cursor + TREE_PAGE)
                nxt = f"{hub_scheme}://{self.headers['Host']}{urllib.parse.urlsplit(self.path).path}?{urllib.parse.urlencode(q)}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            self._send(200, page, headers)

        def _resolve(self, method, path, token):
            parts = path.lstrip("/").split("/")
            kind = "model"
            if parts[0] == "datasets":
                kind, parts = "dataset", parts[1:]
            if len(parts) < 5 or parts[2] != "resolve":
                raise HubError(404, None, "Not Found")
            repo_id, rev, file_path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self._visible(kind, state.repos.get(repo_id), repo_id, token)
            self._check_files_access(repo, token, kind)
            sha = self._revision(repo, rev)
            files = repo.commits[sha]
            if file_path not in files:
                raise HubError(404, "EntryNotFound", f"{file_path} does not exist on \"{rev}\"")
            data = files[file_path]
            headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
            if len(data) >= LFS_THRESHOLD:
                oid = hashlib.sha256(data).hexdigest()
                expires = int(time.time()) + 3600
                xet_hash = state.xet_hash(repo, data)
                # A client without Xet follows Location: the bridge for a Xet file, the LFS CDN otherwise.
                where = "xet-bridge-us" if xet_hash else "repos"
                location = f"{cdn.url}/{where}/{oid}?Expires={expires}&Signature={_sign(state, oid, expires)}"
                headers.update({"X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(data)),
                                "ETag": f'"{git_blob_id(lfs_pointer(data))}"', "Location": location})
                if xet_hash:
                    # What huggingface_hub's parse_xet_file_data_from_response reads: the hash, and the refresh route
                    # (the Link relation first, X-Xet-Refresh-Route otherwise), on the commit resolved.
                    refresh = (f"{hub_scheme}://{self.headers['Host']}/api/{kind}s/{repo.id}/xet-read-token/{sha}")
                    headers.update({"X-Xet-Hash": xet_hash, "Link": f'<{refresh}>; rel="xet-auth"',
                                    "X-Xet-Refresh-Route": refresh})
                return self._send(302, b"", headers)
            headers["ETag"] = f'"{git_blob_id(data)}"'
            self._send(200, data, headers, head_only=method == "HEAD")

        def _xet_read_token(self, repo: Repo, kind: str, rev: str, token: Token | None):
            """The refresh route of a Xet file: the same access as its download (gated, private), then the CAS url, a
            short-lived token for this repository and its expiry, as headers (huggingface_hub's
            parse_xet_connection_info_from_headers) and as JSON (hf-xet's CasJWTInfo, read when it refreshes)."""
            self._check_files_access(repo, token, kind)
            self._revision(repo, rev)
            xet = state.xet.issue_token(kind, repo.id)
            self._send(200, {"casUrl": state.xet.url, "accessToken": xet.value, "exp": xet.expires},
                       {"X-Xet-Cas-Url": state.xet.url, "X-Xet-Access-Token": xet.value,
                        "X-Xet-Token-Expiration": str(xet.expires)})

        # writes ------------------------------------------------------------------------------------------------------
        def _may_write(self, token: Token | None, namespace: str, repo_id: str | None = None) -> bool:
            """A write token writes where its owner may (the user's namespace, the user's orgs); a fine-grained token
            only where it is scoped with `repo.write` (the namespace, or the one repository); a read token nowhere."""
            if token is None or token.role == "read":
                return False
            orgs = state.users.get(token.owner, {"orgs": []})["orgs"]
            if namespace != token.owner and namespace not in orgs:
                return False
            if token.role == "write":
                return True
            return any("repo.write" in s.get("permissions", []) and (
                s["entity"]["name"] == namespace and s["entity"].get("type") in ("user", "org") or
                repo_id is not None and s["entity"]["name"] == repo_id and s["entity"].get("type") in (
                    "model", "dataset")) for s in token.scoped)

        def _may_create(self, token: Token, namespace: str) -> bool:
            """Creating a repository is a namespace's right: a fine-grained token scoped to one repository writes
            that (existing) repository and creates nothing (huggingface_hub's create_repo(exist_ok=True) reads a
            403 as "no write permission on the namespace" and falls back to repo_info)."""
            return self._may_write(token, namespace)

        def _write_access(self, repo: Repo, token: Token | None):
            if token is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            if not self._may_write(token, repo.id.split("/")[0], repo.id):
                raise HubError(403, None, "Forbidden: you must use a write token to upload to a repository"
                               if token.role == "read" else
                               f"You don't have the rights to write to {repo.type} {repo.id}")

        def _create_repo(self, token):
            """POST /api/repos/create: {name, organization, visibility|private, type}. 409 if it exists (the client
            treats that as success with exist_ok), 403 where the token may not create."""
            if token is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            body = json.loads(self.body or b"{}")
            name, kind = body.get("name") or "", body.get("type") or "model"
            namespace = body.get("organization") or token.owner
            repo_id = f"{namespace}/{name}"
            if kind not in ("model", "dataset") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) \
                    or ".." in name or name.endswith((".git", ".")):
                raise HubError(400, None, f"Invalid repo name {name!r}: use letters, digits, '-', '_' and '.'"
                                          " (no '--' or '..', at most 96 characters)")
            if not self._may_create(token, namespace):
                raise HubError(403, None, f'You don\'t have the rights to create a {kind} under the namespace'
                                          f' "{namespace}"')
            private = body.get("private")
            if "visibility" in body:
                private = body["visibility"] != "public"
            with state.lock:        # two creates at once: one creates it, the other gets the 409
                existing = state.repos.get(repo_id)
                if existing is not None:
                    # The client's exist_ok reads `url` from the 409 body.
                    raise HubError(409, None, f"You already created this {kind} repo",
                                   {"url": self._repo_url(existing)})
                repo = Repo(repo_id, type=kind, private=bool(private), license="other", members={namespace})
                repo.commit({".gitattributes": GITATTRIBUTES})
                state.repos[repo_id] = repo
            self._send(200, {"url": self._repo_url(repo), "name": repo_id,
                             "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]})

        def _repo_url(self, repo: Repo) -> str:
            return f"{hub_scheme}://{self.headers['Host']}/" + ("" if repo.type == "model" else "datasets/") + repo.id

        def _validate_yaml(self):
            """POST /api/validate-yaml: the model card's front matter must be a YAML mapping."""
            body = json.loads(self.body or b"{}")
            content = body.get("content") or ""
            errors = []
            if content.startswith("---"):
                head, sep, _ = content[3:].partition("\n---")
                if not sep:
                    errors.append({"message": "the metadata block is not closed by a '---' line"})
                else:
                    import yaml
                    try:
                        meta = yaml.safe_load(head)
                    except yaml.YAMLError as exc:
                        errors.append({"message": f"invalid YAML: {exc}"})
                    else:
                        if meta is not None and not isinstance(meta, dict):
                            errors.append({"message": "the metadata must be a mapping"})
            if errors:
                return self._send(400, {"errors": errors, "warnings": []},
                                  {"X-Error-Message": "Invalid metadata in README.md"})
            self._send(200, {"errors": [], "warnings": []})

        def _preupload(self, repo: Repo, rev: str, token):
            """POST preupload/{revision}: per file, whether it goes to LFS (large or binary) and the oid the file
            has at that revision (git blob id, or the LFS object's sha256), which lets the client skip unchanged
            files."""
            self._write_access(repo, token)
            sha = repo.refs.get(urllib.parse.unquote(rev))
            files = repo.commits.get(sha, {}) if sha else {}
            out = []
            for f in json.loads(self.body or b"{}").get("files", []):
                lfs = int(f.get("size") or 0) >= LFS_THRESHOLD     # the same rule file_entry lists files by
                existing = files.get(f["path"])
                oid = None
                if existing is not None:
                    entry = file_entry(f["path"], existing)
                    oid = entry["lfs"]["oid"] if lfs and "lfs" in entry else (git_blob_id(existing) if not lfs
                                                                              else None)
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                            "oid": oid})
            self._send(200, {"files": out, "commitOid": sha})

        def _lfs_batch(self, path: str, token):
            """The git-lfs batch API (upload): objects already stored get no actions (the client skips them);
            others get a presigned PUT on the storage origin and a verify call back to the Hub."""
            rest = path.lstrip("/").removesuffix(".git/info/lfs/objects/batch")
            kind = "model"
            if rest.startswith("datasets/"):
                kind, rest = "dataset", rest[len("datasets/"):]
            repo = self._visible(kind, state.repos.get(rest), rest, token)
            self._write_access(repo, token)
            body = json.loads(self.body or b"{}")
            if body.get("operation") != "upload":
                raise HubError(422, None, "only the upload operation is served here")
            host = f"{hub_scheme}://{self.headers['Host']}"
            objects = []
            expires = int(time.time()) + 900
            for o in body.get("objects", []):
                oid, size = o["oid"], int(o["size"])
                if not re.fullmatch(r"[0-9a-f]{64}", oid):
                    objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid"}})
                    continue
                entry: dict = {"oid": oid, "size": size, "authenticated": True}
                if oid not in state.blobs:
                    put = f"{cdn.url}/lfs-upload/{oid}?Expires={expires}&Signature={_sign(state, 'put:' + oid, expires)}"
                    entry["actions"] = {"upload": {"href": put, "header": {}, "expires_in": 900},
                                        "verify": {"href": f"{host}/api/lfs-verify/{kind}/{repo.id}", "header": {}}}
                objects.append(entry)
            self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                       {"Content-Type": "application/vnd.git-lfs+json"})

        def _lfs_verify(self, path: str, token):
            kind, _, repo_id = path[len("/api/lfs-verify/"):].partition("/")
            repo = self._visible(kind, state.repos.get(repo_id), repo_id, token)
            self._write_access(repo, token)
            body = json.loads(self.body or b"{}")
            data = state.blobs.get(body.get("oid", ""))
            if data is None or len(data) != int(body.get("size") or -1):
                raise HubError(404, None, "Object not found or size mismatch")
            self._send(200, {"ok": True})

        def _commit(self, repo: Repo, rev: str, token):
            """POST commit/{revision}: an NDJSON header then one line per file (`file` base64, `lfsFile` by sha256
            of an uploaded object, `deletedFile`, `deletedFolder`); 412 if parentCommit is not the head, 422 for an
            LFS object never uploaded. One new commit; the answer gives its oid and URL."""
            self._write_access(repo, token)
            rev = urllib.parse.unquote(rev)
            if repo.refs.get(rev) is None:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            lines = [json.loads(line) for line in (self.body or b"").decode().splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                raise HubError(400, None, "the first line of a commit must be its header")
            header = lines[0]["value"]
            with state.lock:        # read the head, check the parent and commit as one step
                sha = self._apply_commit(repo, rev, header, lines[1:], token.owner)
            url = self._repo_url(repo)
            self._send(200, {"success": True, "commitOid": sha, "commitUrl": f"{url}/commit/{sha}",
                             "pullRequestUrl": None})

        def _apply_commit(self, repo: Repo, rev: str, header: dict, lines: list, user: str) -> str:
            """The operations on the branch's head, under the Hub's lock. With `parentCommit` (a full oid or a
            shorthand, as huggingface_hub's create_commit documents) the head must still be that commit, or 412
            "A commit has happened since" (the status and message huggingface_hub's own test_create_commit_conflict
            expects from the Hub); without it, the operations apply to whatever the head is now."""
            head = repo.refs[rev]
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent.lower()):
                raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[head])
            for line in lines:
                key, value = line.get("key"), line.get("value") or {}
                p = value.get("path", "")
                if not p or p.startswith("/") or ".." in p.split("/"):
                    raise HubError(400, None, f"invalid path {p!r}")
                if key == "file":
                    files[p] = base64.b64decode(value.get("content") or "")
                elif key == "lfsFile":
                    data = state.blobs.get(value.get("oid", ""))
                    if data is None:
                        raise HubError(422, None, f"Your push was rejected because an LFS pointer ({p}) points to"
                                                  " a file that does not exist in the LFS storage")
                    files[p] = data
                elif key == "deletedFile":
                    if p not in files:
                        raise HubError(404, "EntryNotFound", "A file with this name doesn't exist")
                    del files[p]
                elif key == "deletedFolder":
                    files = {k: v for k, v in files.items() if not k.startswith(p.rstrip("/") + "/")}
                else:
                    raise HubError(400, None, f"unknown commit operation {key!r}")
            sha = repo.commit(files, rev, replace=True)
            for data in files.values():
                state.blobs.setdefault(hashlib.sha256(data).hexdigest(), data)
            repo.history.append({"sha": sha, "user": user, "summary": header.get("summary", ""),
                                 "files": len(lines), "parent": head})
            return sha

        # jobs --------------------------------------------------------------------------------------------------------
        def _jobs(self, method, path, token):
            if token is None:
                raise HubError(401, None, "Invalid credentials in Authorization header")
            parts = path.split("/")[3:]      # [ns] | [ns, id] | [ns, id, logs|cancel]
            ns = parts[0]
            if ns != token.owner and ns not in state.users.get(token.owner, {"orgs": []})["orgs"]:
                raise HubError(403, None, f"You don't have the rights to run jobs in the namespace {ns}")
            if token.role == "read":
                raise HubError(403, None, "A write token is needed to run jobs")
            if len(parts) == 1 and method == "POST":
                spec = json.loads(self.body or b"{}")
                if not spec.get("dockerImage") and not spec.get("spaceId"):
                    raise HubError(400, None, "dockerImage or spaceId is required")
                job_id = secrets.token_hex(12)
                job = {"id": job_id, "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                       "dockerImage": spec.get("dockerImage"), "spaceId": spec.get("spaceId"),
                       "command": spec.get("command") or [], "arguments": spec.get("arguments") or [],
                       "environment": spec.get("environment") or {}, "secrets": spec.get("secrets") or {},
                       "flavor": spec.get("flavor", "cpu-basic"), "timeout": spec.get("timeoutSeconds"),
                       "labels": spec.get("labels") or {},
                       "owner": {"id": ns, "name": ns, "type": "user"}, "createdBy": {"id": token.owner,
                                                                                      "name": token.owner},
                       "status": {"stage": "SCHEDULING", "message": None}, "logs": []}
                state.jobs[job_id] = job
                if state.job_runner:
                    state.job_runner(job)
                return self._send(200, _public_job(job))
            if len(parts) == 1 and method == "GET":
                return self._send(200, [_public_job(j) for j in state.jobs.values() if j["owner"]["name"] == ns])
            job = state.jobs.get(parts[1])
            if job is None or job["owner"]["name"] != ns:
                raise HubError(404, None, "Job not found")
            if len(parts) == 2:
                return self._send(200, _public_job(job))
            if parts[2] == "cancel" and method == "POST":
                if job.get("cancel"):
                    job["cancel"]()
                job["status"] = {"stage": "CANCELED", "message": None}
                return self._send(200, _public_job(job))
            if parts[2] == "logs":
                lines = "".join(f"data: {json.dumps({'data': line, 'timestamp': ts})}\n\n" for ts, line in job["logs"])
                return self._send(200, lines.encode(), {"Content-Type": "text/event-stream"})
            raise HubError(404, None, "Not Found")

    return Hub


def _public_job(job: dict) -> dict:
    """What the Jobs API shows back: `environment` in plain text, secret names only, never their values."""
    shown = {k: v for k, v in job.items() if k not in ("secrets", "logs", "cancel")}
    shown["secrets"] = sorted(job["secrets"])
    return shown

"""The local Hub's Xet storage: a CAS (reconstruction API) and a transfer host (xorb byte ranges), enough for the
real hf-xet client to download a Xet-backed file through the local Hub.

The protocol, as hf-xet 1.8.0 speaks it (xet-core: openapi/cas.openapi.yaml, xet_client/src/cas_client/
remote_client.rs; https://huggingface.co/docs/xet/download-protocol):
1. the Hub's HEAD on `resolve` carries `X-Xet-Hash` and the refresh route (`Link: <...>; rel="xet-auth"`), and
   `GET /api/{models,datasets}/{repo}/xet-read-token/{rev}` answers the CAS url, a token and its expiry (localcloud.hub);
2. `GET {cas}/v2/reconstructions/{file hash}` (a 404 or 501 makes the client use `/v1/...`), with the token and a
   `Range` of file bytes, answers the terms (xorb hash, chunk index range, unpacked length) and signed URLs with the
   byte range of those chunks in the xorb;
3. `GET {signed url}` with that `Range` (no Hub token) answers the xorb's chunks: each an 8-byte header (version 0,
   compressed length, compression scheme, uncompressed length; 3-byte little-endian numbers) and its bytes.

What is not Xet here: names are SHA-256 stand-ins (the Xet file hash and xorb hash are BLAKE3 merkle hashes; hf-xet
does not recompute them on download, so the client cannot tell), a file is cut into fixed 64 KiB chunks stored
uncompressed in one xorb of its own (the real client cuts content-defined chunks, compresses them and packs many
files' chunks into shared xorbs), and there is no upload side (xorbs, shards, global dedup: 404).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

CHUNK_SIZE = 64 * 1024              # at most 128 KiB (xet-core xorb_object/constants.rs MAX_CHUNK_SIZE)
TOKEN_LIFETIME_S = 3600
URL_LIFETIME_S = 3600
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class XetFile:
    file_hash: str
    xorb_hash: str
    size: int
    chunk_sizes: tuple[int, ...]    # uncompressed bytes of each chunk, in order

    def chunk_start(self, index: int) -> int:
        """Where chunk `index` starts in the file."""
        return sum(self.chunk_sizes[:index])

    def xorb_offset(self, index: int) -> int:
        """Where chunk `index` (its header) starts in the xorb: every chunk is stored uncompressed."""
        return sum(self.chunk_sizes[:index]) + 8 * index


@dataclass(frozen=True)
class XetToken:
    value: str
    repo_type: str
    repo_id: str
    expires: int


def _chunk_header(length: int) -> bytes:
    size = length.to_bytes(3, "little")
    return bytes([0]) + size + bytes([0]) + size        # version 0, scheme 0 (none): compressed == uncompressed


class XetStore:
    """Xet files by hash, the xorbs that hold them, and the access tokens the Hub's token route hands out."""

    def __init__(self) -> None:
        self.files: dict[str, XetFile] = {}
        self.xorbs: dict[str, bytes] = {}
        self.tokens: dict[str, XetToken] = {}
        self.by_content: dict[str, str] = {}            # sha256 of the content -> file hash
        self.key = secrets.token_bytes(16)
        self.lock = threading.Lock()
        self.server = None                               # the loopback server (start_xet)

    @property
    def url(self) -> str:
        assert self.server is not None, "start_xet first"
        return self.server.url

    def add(self, data: bytes) -> XetFile:
        """The Xet file for `data` (stored on first use)."""
        sha = hashlib.sha256(data).hexdigest()
        with self.lock:
            known = self.by_content.get(sha)
            if known is not None:
                return self.files[known]
            sizes = tuple(len(data[i:i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE)) or (0,)
            xorb = b"".join(_chunk_header(len(data[i:i + CHUNK_SIZE])) + data[i:i + CHUNK_SIZE]
                            for i in range(0, max(len(data), 1), CHUNK_SIZE))
            xfile = XetFile(hashlib.sha256(b"xet-file\0" + data).hexdigest(),
                            hashlib.sha256(b"xet-xorb\0" + xorb).hexdigest(), len(data), sizes)
            self.files[xfile.file_hash] = xfile
            self.xorbs[xfile.xorb_hash] = xorb
            self.by_content[sha] = xfile.file_hash
            return xfile

    def issue_token(self, repo_type: str, repo_id: str) -> XetToken:
        token = XetToken("xet_" + secrets.token_urlsafe(24), repo_type, repo_id, int(time.time()) + TOKEN_LIFETIME_S)
        with self.lock:
            self.tokens[token.value] = token
        return token

    def sign(self, xorb_hash: str, expires: int) -> str:
        return hmac.new(self.key, f"{xorb_hash}:{expires}".encode(), hashlib.sha256).hexdigest()


def start_xet(state, tls_context=None):
    """The CAS and the transfer host on one loopback origin; the log names the public host each path stands for."""
    from localcloud.loopback import serve
    state.xet.server = serve(_xet_handler(state), tls_context)
    return state.xet.server


def _xet_handler(state):
    store: XetStore = state.xet

    class Xet(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _send(self, status: int, body: bytes | dict | list = b"", headers: dict | None = None):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if not isinstance(body, bytes):
                self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _log(self, path: str, host: str, token: XetToken | None):
            state.log.append({"method": self.command, "path": "xet:" + path, "user": None, "t": time.time(),
                              "authorization": self.headers.get("authorization") is not None,
                              "hub_token": (self.headers.get("authorization") or "")[7:].strip() in state.tokens,
                              "host": host, "wire_path": path, "repo": token.repo_id if token else None,
                              "user_agent": self.headers.get("User-Agent", "")})

        def _token(self) -> XetToken | None:
            auth = self.headers.get("authorization") or ""
            token = store.tokens.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
            return token if token is not None and token.expires > time.time() else None

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path.startswith("/xorbs/"):
                self._log(url.path, state.public_hosts["xet-transfer"], None)
                return self._xorb_range(url)
            token = self._token()
            self._log(url.path, state.public_hosts["xet-cas"], token)
            m = re.fullmatch(r"/v([12])/reconstructions/([0-9a-fA-F]{64})", url.path)
            if not m:
                return self._send(404, {"error": "Not Found"})
            if token is None:
                return self._send(401, {"error": "missing or expired Xet access token"})
            xfile = store.files.get(m.group(2).lower())
            # A token reads the files of the repository it was issued for, as the Hub scopes Xet tokens to one.
            if xfile is None or not state.repo_has_xet_file(token.repo_type, token.repo_id, xfile.file_hash):
                return self._send(404, {"error": "File not found"})
            return self._reconstruction(int(m.group(1)), xfile)

        do_HEAD = do_GET

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            token = self._token()
            self._log(url.path, state.public_hosts["xet-cas"], token)
            if url.path == "/v1/telemetry":
                return self._send(200 if token else 401, {})
            # The upload side (xorbs, shards) is not emulated: a download never writes.
            self._send(404, {"error": "Not Found"})

        def _reconstruction(self, version: int, xfile: XetFile):
            first, last = 0, xfile.size - 1
            rng = self.headers.get("Range") or ""
            if rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                first, last = int(a or 0), min(int(b) if b else xfile.size - 1, xfile.size - 1)
            if first >= xfile.size or first > last:
                return self._send(416, {"error": "Range Not Satisfiable"})
            i0 = max(i for i in range(len(xfile.chunk_sizes)) if xfile.chunk_start(i) <= first)
            i1 = max(i for i in range(len(xfile.chunk_sizes)) if xfile.chunk_start(i) <= last) + 1
            chunks = {"start": i0, "end": i1}
            byte_range = {"start": xfile.xorb_offset(i0), "end": xfile.xorb_offset(i1) - 1}    # inclusive end
            expires = int(time.time()) + URL_LIFETIME_S
            transfer = (f"{store.url}/xorbs/default/{xfile.xorb_hash}?Expires={expires}"
                        f"&Signature={store.sign(xfile.xorb_hash, expires)}")
            body: dict = {"offset_into_first_range": first - xfile.chunk_start(i0),
                          "terms": [{"hash": xfile.xorb_hash, "range": chunks,
                                     "unpacked_length": xfile.chunk_start(i1) - xfile.chunk_start(i0)}]}
            if version == 2:
                body["xorbs"] = {xfile.xorb_hash: [{"url": transfer, "ranges": [{"chunks": chunks,
                                                                                  "bytes": byte_range}]}]}
            else:
                body["fetch_info"] = {xfile.xorb_hash: [{"range": chunks, "url": transfer, "url_range": byte_range}]}
            self._send(200, body)

        def _xorb_range(self, url):
            q = urllib.parse.parse_qs(url.query)
            xorb_hash = url.path.rsplit("/", 1)[-1]
            expires = int(q.get("Expires", ["0"])[0])
            good = hmac.compare_digest(q.get("Signature", [""])[0], store.sign(xorb_hash, expires))
            if not good or expires < time.time() or xorb_hash not in store.xorbs:
                return self._send(403, b"<Error><Code>AccessDenied</Code></Error>")
            data = store.xorbs[xorb_hash]
            rng = self.headers.get("Range") or ""
            if not rng.startswith("bytes=") or "," in rng:
                return self._send(200, data, {"Content-Type": "application/octet-stream"})
            a, _, b = rng[6:].partition("-")
            start, end = int(a or 0), min(int(b) if b else len(data) - 1, len(data) - 1)
            self._send(206, data[start:end + 1], {"Content-Type": "application/octet-stream",
                                                  "Content-Range": f"bytes {start}-{end}/{len(data)}"})

    return Xet


def is_xet_hash(value: str) -> bool:
    return bool(_HEX64.match(value))

"""Cloud Storage request preconditions, enforced in front of the GCS emulator exactly as Google documents them.

Why a front: fake-gcs-server (the emulator localcloud.gcs runs) honours `ifGenerationMatch` on multipart uploads
only. Measured against the version pinned here through the official client: a resumable upload
(`uploadType=resumable`, what the client sends for a stream or above 8 MiB) with `ifGenerationMatch=0` over an
existing object succeeded and replaced it, and so did a delete, a compose and a copy with a generation that did not
match, and a metadata patch with a wrong metageneration. Code that relies on preconditions for mutual exclusion
(jobs.claim) would pass against the emulator and fail on Google. This front checks every precondition of the JSON
API before the emulator sees the request, and holds a lock per object around the check and the write, so a check
and the write it admits are one step (Cloud Storage is strongly consistent: an object write is atomic).

Google's rules, one row each (the JSON API's query parameters):

| parameter                  | the request proceeds when                                 | else | source |
|----------------------------|-----------------------------------------------------------|------|--------|
| ifGenerationMatch=N        | the live object's generation is N; N=0: no live object     | 412  | [1]    |
| ifGenerationNotMatch=N     | the live object's generation is not N (or there is none)  | 304  | [1]    |
| ifMetagenerationMatch=N    | the live object's metageneration is N                     | 412  | [1]    |
| ifMetagenerationNotMatch=N | the live object's metageneration is not N (or none)       | 304  | [1]    |
| ifSource*Match (copy, rewrite) | the same, applied to the source object               | 412/304 | [1] |
| generation of a new write  | every write of an object's data makes a new generation     |      | [2]    |

[1] Request preconditions, https://cloud.google.com/storage/docs/request-preconditions (the JSON API / XML API
    table; "Object composition preconditions"; the 412 Precondition Failed / 304 Not Modified answers).
[2] Object generation and metageneration, https://cloud.google.com/storage/docs/metadata#generation-number and
    https://cloud.google.com/storage/docs/generations-preconditions.

A resumable upload writes its object when its last chunk arrives; its preconditions are those of the request that
started the session. They are checked when the session starts (a doomed upload fails before any data is sent) and
again, under the object's lock, on the request that completes it.

`PreconditionFront` is the check alone (`admit` returns an answer to send instead, or None and holds the object's
lock until `done`); `start_precondition_front(upstream)` is a loopback HTTP server that runs it and forwards to the
emulator. Another front (an authorizing one) can chain in front of this server by forwarding to its URL, or call
`PreconditionFront.admit/done` itself around its own forward.
"""
from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from contextlib import ExitStack
from dataclasses import dataclass, field

from localcloud.loopback import RelayHandler, Server, serve

# (parameter, field, "match"|"not", status when it does not hold), rows of the table above.
RULES = (
    ("ifGenerationMatch", "generation", "match", 412),
    ("ifGenerationNotMatch", "generation", "not", 304),
    ("ifMetagenerationMatch", "metageneration", "match", 412),
    ("ifMetagenerationNotMatch", "metageneration", "not", 304),
)
SOURCE_RULES = tuple((f"ifSource{p[2:]}", f, kind, status) for p, f, kind, status in RULES)
PARAMS = {r[0] for r in RULES + SOURCE_RULES}

CONDITION_NOT_MET = {"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                               "errors": [{"domain": "global", "reason": "conditionNotMet",
                                           "message": "At least one of the pre-conditions you specified did not hold.",
                                           "locationType": "header", "location": "If-Match"}]}}


@dataclass
class Answer:
    """What to send instead of forwarding: a failed precondition."""
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)


@dataclass
class _Target:
    bucket: str
    name: str
    rules: tuple
    params: dict


def _failed(status: int) -> Answer:
    if status == 304:
        return Answer(304)
    return Answer(412, json.dumps(CONDITION_NOT_MET).encode(), {"Content-Type": "application/json; charset=UTF-8"})


def _multipart_name(content_type: str, body: bytes) -> str:
    """The object name in a multipart upload's first part (its JSON metadata)."""
    boundary = ""
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return ""
    for part in body.split(b"--" + boundary.encode()):
        head, sep, rest = part.partition(b"\r\n\r\n")
        if sep and b"json" in head.lower():
            try:
                return json.loads(rest.strip()).get("name", "")
            except ValueError:
                return ""
    return ""


class PreconditionFront:
    """Checks a JSON API request's preconditions against the emulator's current object, under that object's lock."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._sessions: dict[str, _Target] = {}        # resumable upload_id -> its object and preconditions
        self.refused = 0                               # requests answered 412/304 here (tests read it)

    # the object's current state -------------------------------------------------------------------------------
    def current(self, bucket: str, name: str) -> dict | None:
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                                f"{urllib.parse.quote(name, safe='')}")
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return json.loads(data) if resp.status == 200 else None

    def _lock(self, bucket: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((bucket, name), threading.Lock())

    def _holds(self, target: _Target) -> Answer | None:
        present = self.current(target.bucket, target.name)
        for param, fld, kind, status in target.rules:
            if param not in target.params:
                continue
            wanted = int(target.params[param])
            have = int(present[fld]) if present is not None else None
            if kind == "match":
                ok = (have is None) if (fld == "generation" and wanted == 0) else (have == wanted)
            else:
                ok = have != wanted
            if not ok:
                self.refused += 1
                return _failed(status)
        return None

    # the request -----------------------------------------------------------------------------------------------
    def _targets(self, method: str, path: str, params: dict, headers, body: bytes) -> tuple[list[_Target], bool]:
        """The objects a request is about (with the preconditions that apply to each) and whether it writes."""
        parts = [urllib.parse.unquote(p) for p in path.split("/")]
        # /upload/storage/v1/b/B/o : uploads (media, multipart, resumable start and chunks)
        if parts[1:3] == ["upload", "storage"] and len(parts) == 7 and parts[6] == "o":
            bucket = parts[5]
            if method == "PUT" or "upload_id" in params:
                session = self._sessions.get(params.get("upload_id", ""))
                if session is None:
                    return [], False
                rng = headers.get("Content-Range", "")
                total = rng.rpartition("/")[2]
                completes = total not in ("", "*") and (rng.startswith("bytes */") or
                                                      int(rng.split("-")[-1].split("/")[0]) + 1 == int(total))
                return ([session], True) if completes else ([], False)
            name = params.get("name", "")
            kind = params.get("uploadType", "")
            if not name and kind == "multipart":
                name = _multipart_name(headers.get("Content-Type", ""), body)
            elif not name and body:
                try:
                    name = json.loads(body).get("name", "")
                except ValueError:
                    name = ""
            return ([_Target(bucket, name, RULES, params)] if name else []), kind != "resumable"
        # /storage/v1/b/B/o/NAME[/compose | /copyTo/b/DB/o/DN | /rewriteTo/b/DB/o/DN], /download/storage/v1/b/B/o/NAME
        raw = path.split("/")
        base = 1 if raw[1] == "storage" else 2 if raw[1] == "download" else 0
        if not base or len(raw) < base + 6 or raw[base:base + 2] != ["storage", "v1"] or raw[base + 2] != "b" \
                or raw[base + 4] != "o":
            return [], False
        bucket, rest = urllib.parse.unquote(raw[base + 3]), raw[base + 5:]
        if len(rest) == 2 and rest[1] == "compose" and method == "POST":
            return [_Target(bucket, urllib.parse.unquote(rest[0]), RULES, params)], True
        if len(rest) == 5 and rest[1] in ("copyTo", "rewriteTo") and rest[2] == "b" and rest[4] == "o":
            return [], False
        if len(rest) == 6 and rest[1] in ("copyTo", "rewriteTo") and rest[2] == "b" and rest[4] == "o":
            return [_Target(urllib.parse.unquote(rest[3]), urllib.parse.unquote(rest[5]), RULES, params),
                    _Target(bucket, urllib.parse.unquote(rest[0]), SOURCE_RULES, params)], True
        if len(rest) == 1:
            return [_Target(bucket, urllib.parse.unquote(rest[0]), RULES, params)], method in ("PATCH", "PUT",
                                                                                              "DELETE")
        return [], False

    def admit(self, method: str, path_qs: str, headers, body: bytes) -> tuple[Answer | None, ExitStack]:
        """(an answer to send instead, or None) and the locks held for the forward: close them after it
        (`done`). A write, or a request with preconditions, holds its objects' locks from the check until the
        emulator has answered, so no other write of the object falls between them."""
        split = urllib.parse.urlsplit(path_qs)
        params = dict(urllib.parse.parse_qsl(split.query))
        targets, writes = self._targets(method, split.path, params, headers, body)
        held = ExitStack()
        conditional = [t for t in targets if any(r[0] in t.params for r in t.rules)]
        if not (writes or conditional):
            return None, held
        for key in sorted({(t.bucket, t.name) for t in targets}):
            held.enter_context(self._lock(*key))
        for target in conditional:
            answer = self._holds(target)
            if answer is not None:
                held.close()
                return answer, ExitStack()
        return None, held

    def remember_session(self, method: str, path_qs: str, headers, body: bytes, location: str) -> None:
        """After the emulator opened a resumable session: its upload_id carries the starting request's object and
        preconditions to the request that completes it."""
        split = urllib.parse.urlsplit(path_qs)
        params = dict(urllib.parse.parse_qsl(split.query))
        if method != "POST" or params.get("uploadType") != "resumable" or not location:
            return
        upload_id = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query)).get("upload_id")
        targets, _ = self._targets(method, split.path, params, headers, body)
        if upload_id and targets:
            self._sessions[upload_id] = targets[0]




def start_precondition_front(upstream: str) -> Server:
    """A loopback HTTP server that enforces preconditions (PreconditionFront) and forwards everything to `upstream`
    (the emulator). Its `.front` is the PreconditionFront."""
    front = PreconditionFront(upstream)
    target = urllib.parse.urlsplit(upstream)

    class Handler(RelayHandler):
        def _any(self):
            body = self._body()
            answer, held = front.admit(self.command, self.path, self.headers, body)
            if answer is not None:
                return self._send(answer.status, list(answer.headers.items()), answer.body)
            with held:
                resp, headers, data = self._forward(body)
            if resp.status in (200, 201):
                front.remember_session(self.command, self.path, self.headers, body, resp.getheader("Location", ""))
            self._send(resp.status, headers, data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    Handler.target = target
    server = serve(Handler)
    server.front = front          # type: ignore[attr-defined]
    return server


__all__ = ["Answer", "PARAMS", "PreconditionFront", "RULES", "SOURCE_RULES", "start_precondition_front"]

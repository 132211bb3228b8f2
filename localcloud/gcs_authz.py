"""Cloud Storage's IAM, enforced in front of the GCS emulator (fake-gcs-server checks no permission by itself).

The front identifies the caller from its bearer token (the tokens the local metadata servers and IAM Credentials
issue, localcloud.state.Identities), works out the permission each JSON API request needs (table below), asks the
one evaluator (localcloud.iam, over review/roles.py's table and the plan's bucket and project bindings), and answers
as Cloud Storage does when the caller may not: 401 for no or unknown credentials, 403 with the JSON error body and
message Cloud Storage sends. What it admits it forwards unchanged to the next hop (the precondition front,
localcloud.gcs_preconditions, then the emulator).

| request (JSON API)                                        | permission                      | on     |
|-----------------------------------------------------------|---------------------------------|--------|
| GET /storage/v1/b?project=P (buckets.list)                | storage.buckets.list            | P      |
| POST /storage/v1/b?project=P (buckets.insert)             | storage.buckets.create          | P      |
| GET /storage/v1/b/B                                       | storage.buckets.get             | B      |
| PATCH, PUT /storage/v1/b/B                                | storage.buckets.update          | B      |
| DELETE /storage/v1/b/B                                    | storage.buckets.delete          | B      |
| GET, PUT /storage/v1/b/B/iam                              | storage.buckets.get/setIamPolicy| B      |
| GET /storage/v1/b/B/o (objects.list)                      | storage.objects.list            | B      |
| GET /storage/v1/b/B/o/N, GET /download/storage/v1/b/B/o/N | storage.objects.get             | B      |
| POST /upload/storage/v1/b/B/o (media, multipart, resumable start) | storage.objects.create (+ storage.objects.delete to replace an object) | B, and the metadata's `bucket` if it names another |
| PATCH, PUT /storage/v1/b/B/o/N                            | storage.objects.update          | B      |
| DELETE /storage/v1/b/B/o/N                                | storage.objects.delete          | B      |
| POST .../o/N/compose                                      | storage.objects.create (+ get)  | B      |
| POST .../o/N/copyTo|rewriteTo/b/D/o/M                     | storage.objects.get on B, storage.objects.create (+ delete) on D | |

Source: Cloud Storage's "IAM permissions for JSON methods",
https://cloud.google.com/storage/docs/access-control/iam-json. A resumable session's later requests carry no
credentials on Google either (the session URI is the authority); here they are accepted only at the URI of a session
this front opened (its bucket's upload path, PUT or DELETE; the session's Location is rewritten to point at this
front), and an `upload_id` named on any other request is refused (404). `GET /storage/v1/b/B/iam/testPermissions` answers from the evaluator. Anything else is refused.
"""
from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from dataclasses import dataclass

from localcloud.gcs_preconditions import _multipart_name
from localcloud.iam import Iam
from localcloud.loopback import RelayHandler, Server, serve
from localcloud.state import Identities
from review import roles as R



@dataclass(frozen=True)
class Need:
    permission: str
    bucket: str = ""           # the bucket it is checked on (or "" with `project`)
    project: str = ""
    what: str = "bucket"       # "bucket" or "object": the wording of Cloud Storage's message
    replaces: str = ""         # an object a write would replace: storage.objects.delete too, if it exists


def needs(method: str, path: str, params: dict, content_type: str, body: bytes) -> list[Need] | None:
    """The permissions a JSON API request needs (the table above), or None for a request the front refuses."""
    raw = path.split("/")
    part = [urllib.parse.unquote(p) for p in raw]
    if part[1:4] == ["storage", "v1", "b"]:
        rest = part[4:]
        if not rest or rest == [""]:
            project = params.get("project", "")
            if method == "GET":
                return [Need(R.BUCKET_LIST, project=project)]
            if method == "POST":
                return [Need(R.BUCKET_CREATE, project=project)]
            return None
        bucket, rest = rest[0], rest[1:]
        if not rest:
            return {"GET": [Need(R.BUCKET_GET, bucket)], "PATCH": [Need(R.BUCKET_UPDATE, bucket)],
                    "PUT": [Need(R.BUCKET_UPDATE, bucket)], "DELETE": [Need(R.BUCKET_DELETE, bucket)]}.get(method)
        if rest == ["iam"]:
            return {"GET": [Need(R.BUCKET_GET_IAM, bucket)], "PUT": [Need(R.BUCKET_SET_IAM, bucket)]}.get(method)
        if rest == ["iam", "testPermissions"] and method == "GET":
            return []
        if rest[0] != "o":
            return None
        if len(rest) == 1:
            return [Need(R.OBJECT_LIST, bucket)] if method == "GET" else None
        name = part[6]
        tail = [urllib.parse.unquote(p) for p in raw[7:]]
        if not tail:
            return {"GET": [Need(R.OBJECT_GET, bucket, what="object")],
                    "HEAD": [Need(R.OBJECT_GET, bucket, what="object")],
                    "PATCH": [Need(R.OBJECT_UPDATE, bucket, what="object")],
                    "PUT": [Need(R.OBJECT_UPDATE, bucket, what="object")],
                    "DELETE": [Need(R.OBJECT_DELETE, bucket, what="object")]}.get(method)
        if tail == ["compose"] and method == "POST":
            return [Need(R.OBJECT_GET, bucket, what="object"),
                    Need(R.OBJECT_CREATE, bucket, what="object", replaces=name)]
        if len(tail) == 5 and tail[0] in ("copyTo", "rewriteTo") and tail[1] == "b" and tail[3] == "o" \
                and method == "POST":
            return [Need(R.OBJECT_GET, bucket, what="object"),
                    Need(R.OBJECT_CREATE, tail[2], what="object", replaces=tail[4])]
        return None
    if part[1:5] == ["download", "storage", "v1", "b"] and len(part) >= 8 and part[6] == "o" and method == "GET":
        return [Need(R.OBJECT_GET, part[5], what="object")]
    if part[1:5] == ["upload", "storage", "v1", "b"] and len(part) == 7 and part[6] == "o" and method == "POST":
        name = params.get("name", "")
        if not name and params.get("uploadType") == "multipart":
            name = _multipart_name(content_type, body)
        elif not name and body:
            try:
                name = json.loads(body).get("name", "")
            except (ValueError, AttributeError):
                name = ""
        wanted = [Need(R.OBJECT_CREATE, part[5], what="object", replaces=name)]
        # The emulator writes a resumable upload where its metadata's `bucket` says, not the path's bucket: an
        # upload whose metadata names another bucket needs storage.objects.create there too.
        other = _metadata_bucket(params.get("uploadType", ""), content_type, body)
        if other and other != part[5]:
            wanted.append(Need(R.OBJECT_CREATE, other, what="object", replaces=name))
        return wanted
    return None


def _metadata_bucket(upload_type: str, content_type: str, body: bytes) -> str:
    """The `bucket` an upload's JSON metadata names (a resumable start's body, a multipart upload's first part)."""
    meta: bytes = b""
    if upload_type == "multipart":
        boundary = next((v.strip().strip('"') for k, _, v in (p.strip().partition("=") for p in
                                                              content_type.split(";")[1:]) if k.lower() == "boundary"), "")
        for piece in body.split(b"--" + boundary.encode()) if boundary else []:
            head, sep, rest = piece.partition(b"\r\n\r\n")
            if sep and b"json" in head.lower():
                meta = rest.strip()
                break
    elif upload_type != "media":
        meta = body
    try:
        value = json.loads(meta).get("bucket", "") if meta else ""
    except (ValueError, AttributeError):
        return ""
    return str(value) if value else ""


def _error(status: int, message: str, reason: str, **extra) -> bytes:
    return json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"message": message, "domain": "global", "reason": reason, **extra}]}}
                      ).encode()


class AuthorizingFront:
    """The decision, apart from the HTTP plumbing: `refusal(...)` is None (forward) or (status, body)."""

    def __init__(self, iam: Iam, identities: Identities, upstream: str) -> None:
        self.iam, self.identities = iam, identities
        self.upstream = urllib.parse.urlsplit(upstream)
        self.sessions: dict[str, str] = {}           # resumable upload id opened through this front -> its bucket
        self.refused: list[tuple[str, str, str]] = []   # (member, permission, resource) of every refusal
        self._lock = threading.Lock()

    def _exists(self, bucket: str, name: str) -> bool:
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request("GET", f"/storage/v1/b/{urllib.parse.quote(bucket, safe='')}/o/"
                                f"{urllib.parse.quote(name, safe='')}")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        finally:
            conn.close()

    def refusal(self, method: str, path_qs: str, authorization: str | None, content_type: str,
                body: bytes) -> tuple[int, bytes] | None:
        split = urllib.parse.urlsplit(path_qs)
        params = dict(urllib.parse.parse_qsl(split.query))
        if "upload_id" in params:          # a resumable session's later requests: the session is the authority
            # ... for its own upload only (PUT chunks and status, DELETE to cancel, at the session's URI): the id
            # named on any other request (another bucket's read, delete or upload) authorizes nothing.
            part = [urllib.parse.unquote(p) for p in split.path.split("/")]
            own = part[1:5] == ["upload", "storage", "v1", "b"] and len(part) == 7 and part[6] == "o" \
                and method in ("PUT", "DELETE")
            if own and self.sessions.get(params["upload_id"]) == part[5]:
                return None
            return 404, _error(404, "No such upload.", "notFound")
        wanted = needs(method, split.path, params, content_type, body)
        if wanted is None:
            return 400, _error(400, f"The local cloud's Cloud Storage front does not serve {method} {split.path}"
                                    " (localcloud/gcs_authz.py lists what it does).", "invalid")
        member = self.identities.member_for(authorization)
        if authorization and member is None:
            return 401, _error(401, "Invalid Credentials", "authError", locationType="header",
                               location="Authorization")
        for need in wanted:
            resource = f"project:{self.iam.project_id(need.project)}" if need.project else f"bucket:{need.bucket}"
            ok = self.iam.allows(member, need.permission, resource)
            permission = need.permission
            if ok and need.replaces and not self.iam.allows(member, R.OBJECT_DELETE, resource) \
                    and self._exists(need.bucket, need.replaces):
                ok, permission = False, R.OBJECT_DELETE     # replacing an object deletes the one it replaces
            if ok:
                continue
            with self._lock:
                self.refused.append((member or "", permission, resource))
            what = "project" if need.project else need.what
            target = f"the Google Cloud Storage {what}" if what != "project" else f"project {need.project}"
            if member is None:
                message = (f"Anonymous caller does not have {permission} access to {target}. Permission"
                           f" '{permission}' denied on resource (or it may not exist).")
                return 401, _error(401, message, "required", locationType="header", location="Authorization")
            message = (f"{member.split(':', 1)[-1]} does not have {permission} access to {target}. Permission"
                       f" '{permission}' denied on resource (or it may not exist).")
            return 403, _error(403, message, "forbidden")
        return None

    def after(self, method: str, path_qs: str, status: int, location: str, member: str | None,
              body: bytes) -> bytes:
        """What the front learns from an answer it forwarded: a resumable session it opened, a bucket created in a
        project; and a bucket list keeps the buckets of the project asked about."""
        split = urllib.parse.urlsplit(path_qs)
        params = dict(urllib.parse.parse_qsl(split.query))
        if status not in (200, 201):
            return body
        if location and params.get("uploadType") == "resumable":
            upload_id = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query)).get("upload_id")
            part = [urllib.parse.unquote(p) for p in split.path.split("/")]
            if upload_id and len(part) == 7:
                self.sessions[upload_id] = part[5]
        if split.path.rstrip("/") == "/storage/v1/b":
            project = self.iam.project_id(params.get("project", "") or self.iam.default_project)
            data = json.loads(body or b"{}")
            if method == "POST" and data.get("name"):
                self.iam.place(f"bucket:{data['name']}", project)
            elif method == "GET":
                data["items"] = [b for b in data.get("items", [])
                                 if self.iam.project_of(f"bucket:{b.get('name')}") == project]
                return json.dumps(data).encode()
        if split.path.endswith("/iam/testPermissions"):
            bucket = urllib.parse.unquote(split.path.split("/")[4])
            asked = urllib.parse.parse_qs(split.query).get("permissions", [])
            held = [p for p in asked if self.iam.allows(member, p, f"bucket:{bucket}")]
            return json.dumps({"kind": "storage#testIamPermissionsResponse", "permissions": held}).encode()
        return body


def start_authorizing_front(iam: Iam, identities: Identities, upstream: str) -> Server:
    """A loopback HTTP server: AuthorizingFront's decision, then a forward to `upstream`. Its `.front` is the
    AuthorizingFront."""
    front = AuthorizingFront(iam, identities, upstream)
    target = front.upstream

    class Handler(RelayHandler):
        def _any(self):
            body = self._body()
            authorization = self.headers.get("Authorization")
            refused = front.refusal(self.command, self.path, authorization, self.headers.get("Content-Type", ""),
                                    body)
            if refused is not None:
                return self._send(refused[0], [("Content-Type", "application/json; charset=UTF-8")], refused[1])
            if self.path.split("?", 1)[0].endswith("/iam/testPermissions"):
                data = front.after(self.command, self.path, 200, "", front.identities.member_for(authorization), b"")
                return self._send(200, [("Content-Type", "application/json; charset=UTF-8")], data)
            resp, headers, data = self._forward(body, drop=frozenset({"authorization"}))
            data = front.after(self.command, self.path, resp.status, resp.getheader("Location", ""),
                               front.identities.member_for(authorization), data)
            self._send(resp.status, headers, data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    Handler.target = target
    server = serve(Handler)
    server.front = front          # type: ignore[attr-defined]
    return server

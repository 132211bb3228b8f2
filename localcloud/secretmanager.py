"""Secret Manager over the real gRPC API (google.cloud.secretmanager.v1, the protos the official client ships), plus
the REST `v1/{name}:access` form. Authorization and error wording follow the real service."""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types as sm
from google.iam.v1 import iam_policy_pb2
from google.protobuf import timestamp_pb2

from localcloud.iam import Iam
from localcloud.state import Identities
from review import roles as R

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class Version:
    number: int
    data: bytes
    state: int
    created: timestamp_pb2.Timestamp
    destroyed: timestamp_pb2.Timestamp | None = None


@dataclass
class Secret:
    secret_id: str
    labels: dict
    replication: sm.Replication
    created: timestamp_pb2.Timestamp
    versions: list[Version] = field(default_factory=list)
    rotation: sm.Rotation | None = None
    annotations: dict = field(default_factory=dict)


def _validate(secret_id: str | None, secret: sm.Secret, paths: list[str] | None = None) -> None:
    """The constraints the real service enforces (stacks.constraints, one table for synth and here): a bad
    secret id, label or annotation is INVALID_ARGUMENT, and nothing is created or changed."""
    from stacks.constraints import annotation_problems, label_problems, secret_id_problems
    problems = secret_id_problems(secret_id) if secret_id is not None else []
    if paths is None or "labels" in paths:
        problems += label_problems(dict(secret.labels))
    if paths is None or "annotations" in paths:
        problems += annotation_problems(dict(secret.annotations))
    if problems:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Invalid secret: " + "; ".join(problems))


class SecretStore:
    """The service's state and rules, shared by the gRPC and REST front ends."""

    def __init__(self, project_id: str, project_number: str, iam: Iam, identities: Identities) -> None:
        self.project_id, self.project_number = project_id, project_number
        self.iam, self.grants, self.identities = iam, iam.grants, identities
        self.secrets: dict[str, Secret] = {}
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, str]] = []  # (method, member, resource) for tests and the review
        self.latency_s = 0.0                           # fault knob: added to every call (benchmarks)
        # Cloud Logging's Admin Activity audit log (`cloudaudit.googleapis.com%2Factivity`): AddSecretVersion and
        # EnableSecretVersion are ADMIN_WRITE methods, always written, naming the caller (Google's AuditLog
        # protoPayload). Served by the local Cloud Logging's entries:list (localcloud.cloud).
        self.audit: list[dict] = []

    # names ---------------------------------------------------------------------------------------------------------
    def _parse(self, name: str, want_version: bool) -> tuple[str, str | None]:
        parts = name.split("/")
        ok = len(parts) == (6 if want_version else 4) and parts[0] == "projects" and parts[2] == "secrets"
        if want_version:
            ok = ok and parts[4] == "versions"
        if not ok or not self.iam.known(parts[1]):
            shape = "projects/*/secrets/*/versions/*" if want_version else "projects/*/secrets/*"
            if ok:
                raise RpcError(grpc.StatusCode.PERMISSION_DENIED,
                               f"Permission denied on resource project {parts[1]}.")
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Invalid resource field value in the request. Expected {shape}, got {name!r}.")
        if parts[3] in self.secrets and self.iam.project_of(f"secret:{parts[3]}") != self.iam.project_id(parts[1]):
            # the secret lives in another project: under this project's name it does not exist
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret [{'/'.join(parts[:4])}] not found.")
        return parts[3], (parts[5] if want_version else None)

    def secret_name(self, sid: str) -> str:
        return f"projects/{self.iam.number(self.iam.project_of(f'secret:{sid}'))}/secrets/{sid}"

    def _authorize(self, member: str | None, permission: str, sid: str, resource: str) -> None:
        """localcloud.iam decides, on the secret (and its project, and above)."""
        if member is None:
            raise RpcError(grpc.StatusCode.UNAUTHENTICATED,
                           "Request had invalid authentication credentials. Expected OAuth 2 access token, login"
                           " cookie or other valid authentication credential.")
        if not self.iam.allows(member, permission, f"secret:{sid}"):
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED,
                           f"Permission '{permission}' denied for resource '{resource}' (or it may not exist).")

    def _secret(self, sid: str) -> Secret:
        secret = self.secrets.get(sid)
        if secret is None:
            raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret [{self.secret_name(sid)}] not found.")
        return secret

    def _version(self, secret: Secret, ver: str) -> Version:
        name = f"{self.secret_name(secret.secret_id)}/versions/{ver}"
        if ver == "latest":
            if not secret.versions:
                raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")
            return secret.versions[-1]   # the newest version, whatever its state (as the real alias does)
        if not ver.isdigit():
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid secret version id {ver!r}.")
        for v in secret.versions:
            if v.number == int(ver):
                return v
        raise RpcError(grpc.StatusCode.NOT_FOUND, f"Secret Version [{name}] not found.")

    def _version_pb(self, secret: Secret, v: Version) -> sm.SecretVersion:
        return sm.SecretVersion(name=f"{self.secret_name(secret.secret_id)}/versions/{v.number}", state=v.state,
                                create_time=v.created, destroy_time=v.destroyed,
                                client_specified_payload_checksum=True)

    def _secret_pb(self, s: Secret) -> sm.Secret:
        return sm.Secret(name=self.secret_name(s.secret_id), labels=s.labels, replication=s.replication,
                         create_time=s.created, rotation=s.rotation, annotations=s.annotations)

    # operations ----------------------------------------------------------------------------------------------------
    def create_secret(self, member, parent: str, secret_id: str, secret: sm.Secret) -> sm.Secret:
        project = parent.removeprefix("projects/")
        if not parent.startswith("projects/") or "/" in project or not self.iam.known(project):
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on resource {parent}.")
        if member is None:
            self._authorize(member, R.SECRET_CREATE, secret_id, parent)
        if not self.iam.allows(member, R.SECRET_CREATE, f"project:{self.iam.project_id(project)}"):
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED,
                           f"Permission '{R.SECRET_CREATE}' denied for resource '{parent}' (or it may not exist).")
        _validate(secret_id, secret)
        with self.lock:
            if secret_id in self.secrets:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS,
                               f"Secret [{self.secret_name(secret_id)}] already exists.")
            if "automatic" not in secret.replication and not secret.replication.user_managed.replicas:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Secret.replication is required.")
            self.iam.place(f"secret:{secret_id}", project)
            s = Secret(secret_id, dict(secret.labels), secret.replication, _now(),
                       rotation=secret.rotation if "rotation" in secret else None,
                       annotations=dict(secret.annotations))
            self.secrets[secret_id] = s
            return self._secret_pb(s)

    def get_secret(self, member, name: str) -> sm.Secret:
        sid, _ = self._parse(name, False)
        self._authorize(member, R.SECRET_GET, sid, name)
        return self._secret_pb(self._secret(sid))

    def list_secrets(self, member, parent: str) -> sm.ListSecretsResponse:
        """ListSecrets needs secretmanager.secrets.list "on the specified resource parent" (the project; REST
        reference, projects.secrets.list): without it the call is refused, not answered with an empty list (a
        grant on one secret lists nothing); with it, every secret of the project is listed."""
        project = parent.removeprefix("projects/")
        if not parent.startswith("projects/") or "/" in project or not self.iam.known(project):
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED, f"Permission denied on resource {parent}.")
        if member is None:
            self._authorize(member, R.SECRET_LIST, "", parent)
        project = self.iam.project_id(project)
        if not self.iam.allows(member, R.SECRET_LIST, f"project:{project}"):
            raise RpcError(grpc.StatusCode.PERMISSION_DENIED,
                           f"Permission '{R.SECRET_LIST}' denied for resource '{parent}' (or it may not exist).")
        visible = [s for sid, s in sorted(self.secrets.items()) if self.iam.project_of(f"secret:{sid}") == project]
        return sm.ListSecretsResponse(secrets=[self._secret_pb(s) for s in visible], total_size=len(visible))

    def add_version(self, member, parent: str, payload: sm.SecretPayload) -> sm.SecretVersion:
        sid, _ = self._parse(parent, False)
        self._authorize(member, "secretmanager.versions.add", sid, parent)
        if "data_crc32c" in payload and payload.data_crc32c != google_crc32c.value(payload.data):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch: data_crc32c does not match data.")
        if len(payload.data) > 65536:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Secret payload exceeds the 64 KiB limit.")
        with self.lock:
            s = self._secret(sid)
            v = Version(len(s.versions) + 1, bytes(payload.data), sm.SecretVersion.State.ENABLED, _now())
            s.versions.append(v)
            pb = self._version_pb(s, v)
            self._audit(member, "AddSecretVersion", sid, pb.name)
            return pb

    def get_version(self, member, name: str) -> sm.SecretVersion:
        sid, ver = self._parse(name, True)
        self._authorize(member, R.VERSION_GET, sid, name)
        s = self._secret(sid)
        return self._version_pb(s, self._version(s, ver))

    def list_versions(self, member, parent: str) -> sm.ListSecretVersionsResponse:
        sid, _ = self._parse(parent, False)
        self._authorize(member, R.VERSION_LIST, sid, parent)
        s = self._secret(sid)
        versions = [self._version_pb(s, v) for v in reversed(s.versions)]   # newest first, like the service
        return sm.ListSecretVersionsResponse(versions=versions, total_size=len(versions))

    def access(self, member, name: str) -> sm.AccessSecretVersionResponse:
        sid, ver = self._parse(name, True)
        self.calls.append(("access", member or "", name))
        self._authorize(member, R.ACCESS, sid, name)
        s = self._secret(sid)
        v = self._version(s, ver)
        vname = f"{self.secret_name(sid)}/versions/{v.number}"
        if v.state != sm.SecretVersion.State.ENABLED:
            state = sm.SecretVersion.State(v.state).name
            raise RpcError(grpc.StatusCode.FAILED_PRECONDITION, f"Secret Version [{vname}] is in {state} state.")
        return sm.AccessSecretVersionResponse(
            name=vname, payload=sm.SecretPayload(data=v.data, data_crc32c=google_crc32c.value(v.data)))

    def set_state(self, member, name: str, state: int, permission: str = "") -> sm.SecretVersion:
        """Enable, disable or destroy a version: the permission checked is the one the target state needs
        (`permission` is kept for callers that name it; the state decides)."""
        sid, ver = self._parse(name, True)
        S = sm.SecretVersion.State
        needed = {S.ENABLED: "secretmanager.versions.enable", S.DISABLED: "secretmanager.versions.disable",
                  S.DESTROYED: "secretmanager.versions.destroy"}[state]
        self._authorize(member, needed, sid, name)
        with self.lock:
            s = self._secret(sid)
            v = self._version(s, ver)
            if v.state == sm.SecretVersion.State.DESTROYED:
                raise RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"Secret Version [{self.secret_name(sid)}/versions/{v.number}] is in DESTROYED state.")
            v.state = state
            if state == sm.SecretVersion.State.DESTROYED:
                v.data, v.destroyed = b"", _now()
            pb = self._version_pb(s, v)
            if state == S.ENABLED:
                self._audit(member, "EnableSecretVersion", sid, pb.name)
            return pb

    def _audit(self, member: str, method: str, sid: str, resource: str) -> None:
        """One Admin Activity audit entry (LogEntry JSON with an AuditLog protoPayload), as Cloud Logging returns
        it: logName of the secret's project, the caller in authenticationInfo.principalEmail. Held under the lock."""
        project = self.iam.project_of(f"secret:{sid}")
        ts = time.time()
        self.audit.append({
            "logName": f"projects/{project}/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "audited_resource", "labels": {"project_id": project,
                                                                "service": "secretmanager.googleapis.com",
                                                                "method": f"google.cloud.secretmanager.v1."
                                                                          f"SecretManagerService.{method}"}},
            "protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                             "serviceName": "secretmanager.googleapis.com",
                             "methodName": f"google.cloud.secretmanager.v1.SecretManagerService.{method}",
                             "resourceName": resource,
                             "authenticationInfo": {"principalEmail": member.split(":", 1)[-1]},
                             "authorizationInfo": [{"resource": resource, "granted": True, "permission":
                                                    "secretmanager.versions." +
                                                    ("add" if method == "AddSecretVersion" else "enable")}]},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z",
            "insertId": f"audit-{len(self.audit):08d}", "severity": "NOTICE"})


def _update_secret(store: SecretStore, member, secret: sm.Secret, mask) -> sm.Secret:
    sid, _ = store._parse(secret.name, False)
    store._authorize(member, R.SECRET_UPDATE, sid, secret.name)
    paths = list(mask.paths)
    if not paths:
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "update_mask is required.")
    _validate(None, secret, paths)
    with store.lock:
        s = store._secret(sid)
        for path in paths:
            if path == "labels":
                s.labels = dict(secret.labels)
            elif path == "annotations":
                s.annotations = dict(secret.annotations)
            elif path == "rotation":
                s.rotation = secret.rotation
            else:   # what the local cloud does not model answers like the service does for an immutable field
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"The field {path!r} cannot be updated here.")
        return store._secret_pb(s)


def _delete_secret(store: SecretStore, member, name: str):
    from google.protobuf import empty_pb2
    sid, _ = store._parse(name, False)
    store._authorize(member, R.SECRET_DELETE, sid, name)
    with store.lock:
        store._secret(sid)
        del store.secrets[sid]
    return empty_pb2.Empty()


def _policy_of(store: SecretStore, sid: str):
    from google.iam.v1 import policy_pb2
    by_role: dict[str, list[str]] = {}
    for m, role, res in sorted(store.grants.triples):
        if res == f"secret:{sid}":
            by_role.setdefault(role, []).append(m)
    body = json.dumps(by_role, sort_keys=True).encode()
    return policy_pb2.Policy(version=1, etag=hashlib.sha256(body).digest()[:8],
                             bindings=[policy_pb2.Binding(role=r, members=ms) for r, ms in sorted(by_role.items())])


def _get_iam_policy(store: SecretStore, member, request):
    sid, _ = store._parse(request.resource, False)
    store._authorize(member, R.SECRET_GET_IAM, sid, request.resource)
    store._secret(sid)
    return _policy_of(store, sid)


def _set_iam_policy(store: SecretStore, member, request):
    sid, _ = store._parse(request.resource, False)
    store._authorize(member, R.SECRET_SET_IAM, sid, request.resource)
    with store.lock:
        store._secret(sid)
        current = _policy_of(store, sid)
        if request.policy.etag and request.policy.etag != current.etag:
            raise RpcError(grpc.StatusCode.ABORTED, "There were concurrent policy changes. Please retry the whole"
                                                    " read-modify-write with exponential backoff.")
        store.grants.triples = {t for t in store.grants.triples if t[2] != f"secret:{sid}"}
        for b in request.policy.bindings:
            for m in b.members:
                store.grants.add(m, b.role, f"secret:{sid}")
    return _policy_of(store, sid)


def grpc_handler(store: SecretStore) -> grpc.GenericRpcHandler:
    S = sm.SecretVersion.State

    def method(request_cls, response_cls, fn):
        def handle(request, context):
            member = store.identities.member_for(dict(context.invocation_metadata()).get("authorization"))
            if store.latency_s:
                time.sleep(store.latency_s)
            try:
                return fn(member, request)
            except RpcError as err:
                context.abort(err.code, err.message)
        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=request_cls.deserialize,
                                                   response_serializer=response_cls.serialize)

    def raw(deserialize, fn):     # plain protobuf messages (google.iam.v1, google.protobuf.Empty)
        def handle(request, context):
            member = store.identities.member_for(dict(context.invocation_metadata()).get("authorization"))
            try:
                return fn(member, request)
            except RpcError as err:
                context.abort(err.code, err.message)
        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=deserialize,
                                                   response_serializer=lambda msg: msg.SerializeToString())

    methods = {
        "CreateSecret": method(sm.CreateSecretRequest, sm.Secret,
                               lambda m, r: store.create_secret(m, r.parent, r.secret_id, r.secret)),
        "GetSecret": method(sm.GetSecretRequest, sm.Secret, lambda m, r: store.get_secret(m, r.name)),
        "ListSecrets": method(sm.ListSecretsRequest, sm.ListSecretsResponse,
                              lambda m, r: store.list_secrets(m, r.parent)),
        "AddSecretVersion": method(sm.AddSecretVersionRequest, sm.SecretVersion,
                                   lambda m, r: store.add_version(m, r.parent, r.payload)),
        "GetSecretVersion": method(sm.GetSecretVersionRequest, sm.SecretVersion,
                                   lambda m, r: store.get_version(m, r.name)),
        "ListSecretVersions": method(sm.ListSecretVersionsRequest, sm.ListSecretVersionsResponse,
                                     lambda m, r: store.list_versions(m, r.parent)),
        "AccessSecretVersion": method(sm.AccessSecretVersionRequest, sm.AccessSecretVersionResponse,
                                      lambda m, r: store.access(m, r.name)),
        "EnableSecretVersion": method(sm.EnableSecretVersionRequest, sm.SecretVersion,
                                      lambda m, r: store.set_state(m, r.name, S.ENABLED, "secretmanager.versions.enable")),
        "DisableSecretVersion": method(sm.DisableSecretVersionRequest, sm.SecretVersion,
                                       lambda m, r: store.set_state(m, r.name, S.DISABLED, "secretmanager.versions.disable")),
        "DestroySecretVersion": method(sm.DestroySecretVersionRequest, sm.SecretVersion,
                                       lambda m, r: store.set_state(m, r.name, S.DESTROYED, "secretmanager.versions.destroy")),
        "UpdateSecret": method(sm.UpdateSecretRequest, sm.Secret,
                               lambda m, r: _update_secret(store, m, r.secret, r.update_mask)),
        "DeleteSecret": raw(sm.DeleteSecretRequest.deserialize, lambda m, r: _delete_secret(store, m, r.name)),
        "GetIamPolicy": raw(iam_policy_pb2.GetIamPolicyRequest.FromString, lambda m, r: _get_iam_policy(store, m, r)),
        "SetIamPolicy": raw(iam_policy_pb2.SetIamPolicyRequest.FromString, lambda m, r: _set_iam_policy(store, m, r)),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)


REST_STATUS = {grpc.StatusCode.NOT_FOUND: (404, "NOT_FOUND"), grpc.StatusCode.PERMISSION_DENIED: (403, "PERMISSION_DENIED"),
               grpc.StatusCode.FAILED_PRECONDITION: (400, "FAILED_PRECONDITION"),
               grpc.StatusCode.INVALID_ARGUMENT: (400, "INVALID_ARGUMENT"),
               grpc.StatusCode.UNAUTHENTICATED: (401, "UNAUTHENTICATED")}


def rest_access(store: SecretStore, path: str, authorization: str | None) -> tuple[int, dict]:
    """GET /v1/{name}:access, the JSON form Google's REST API returns."""
    name = path.removeprefix("/v1/").removesuffix(":access")
    try:
        resp = store.access(store.identities.member_for(authorization), name)
    except RpcError as err:
        status, text = REST_STATUS.get(err.code, (500, "INTERNAL"))
        return status, {"error": {"code": status, "message": err.message, "status": text}}
    return 200, {"name": resp.name, "payload": {"data": base64.b64encode(resp.payload.data).decode(),
                                               "dataCrc32c": str(resp.payload.data_crc32c)}}

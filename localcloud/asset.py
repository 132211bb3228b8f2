"""Cloud Asset Inventory, served on the local cloud's gRPC port (`google.cloud.asset.v1.AssetService`, the official
client's transport pointed at it by HFGATE_ASSET_ENDPOINT): `SearchAllIamPolicies` and `SearchAllResources`, read
from the local cloud's own IAM state (localcloud.iam) and what it created from the plan.

The hierarchy is Google's: every project sits in a folder of an organization (`place_hierarchy`), so a grant on the
folder or the organization is inherited, and a search at a folder or organization scope sees the nodes below it.
Each call needs its permission on the scope (cloudasset.assets.searchAllIamPolicies / searchAllResources), decided
by the one evaluator; a caller without it gets PERMISSION_DENIED, as from Google. Grants on `TOP` ("*": the local
cloud's own operators, above its organization) belong to no node Google would report, and are not served.

What drifts from the plan is made by hand, as an operator would after the apply: a grant through a service's
setIamPolicy or `grant()` (any node: folder, organization, project, secret, account, bucket, Pub/Sub topic), a key with
`create_key()` (the local cloud serves no IAM keys.create API), a resource with `add()` / `remove()`, an attribute
the local services do not model (a bucket's public access prevention, a proxy rule's matcher) with `change()`. A
secret's replication and rotation, and its versions (create time, state), come from the local Secret Manager as it
holds them now, so a change made with Secret Manager's own API shows.

`ListAssets` is served for content type RESOURCE (the resource data drift compares) and ACCESS_POLICY (the VPC
Service Controls perimeters of the organization's access policy, `perimeter()`: an organization-level asset, seen
from the organization's scope); the other content types answer INVALID_ARGUMENT.

Names follow Cloud Asset Inventory's full resource names (cloud.google.com/asset-inventory/docs/resource-name-format);
a service account is named by its numeric unique id, as Google names it (a stable stand-in made from its email; its
email is in the result's additional attributes)."""
from __future__ import annotations

import re
import secrets
import threading
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import grpc
from google.cloud.asset_v1 import types as A
from google.cloud.secretmanager_v1 import types as sm
from google.iam.v1 import policy_pb2
from google.protobuf import struct_pb2

from localcloud.iam import TOP, Iam
from localcloud.state import Identities

if TYPE_CHECKING:
    from localcloud.secretmanager import SecretStore
    from review.plan import Plan

SERVICE = "google.cloud.asset.v1.AssetService"
SEARCH_IAM = "cloudasset.assets.searchAllIamPolicies"
SEARCH_RESOURCES = "cloudasset.assets.searchAllResources"
LIST_RESOURCE = "cloudasset.assets.listResource"
LIST_ACCESS_POLICY = "cloudasset.assets.listAccessPolicy"
PERIMETER_TYPE = "accesscontextmanager.googleapis.com/ServicePerimeter"
# The asset types this inventory lists; another answers INVALID_ARGUMENT, as Google answers a type it does not know
# (stricter than Google for the types Google lists and this cloud does not model).
LISTED_TYPES = frozenset({
    "cloudresourcemanager.googleapis.com/Project", "secretmanager.googleapis.com/Secret",
    "secretmanager.googleapis.com/SecretVersion", "iam.googleapis.com/ServiceAccount",
    "iam.googleapis.com/ServiceAccountKey", "storage.googleapis.com/Bucket", "compute.googleapis.com/NetworkAttachment",
    "networksecurity.googleapis.com/GatewaySecurityPolicyRule", "pubsub.googleapis.com/Topic", PERIMETER_TYPE})
CRM = "//cloudresourcemanager.googleapis.com/"
DEFAULT_ORGANIZATION = "100000000900"
DEFAULT_FOLDER = "300000000901"
AGENT = re.compile(r"\(number of ([^)]+)\)")      # review.plan's stand-in for a project's number


def unique_id(email: str) -> str:
    """A service account's 21-digit unique id (a stand-in, stable for an email)."""
    return str(10**20 + zlib.crc32(email.encode()))


def place_hierarchy(iam: Iam, organization: str = DEFAULT_ORGANIZATION, folder: str = DEFAULT_FOLDER) -> None:
    """Every project the plan does not place itself goes into `folders/<folder>` of `organizations/<organization>`."""
    iam.parents.setdefault(f"folder:{folder}", f"organization:{organization}")
    for project in iam.projects:
        iam.parents.setdefault(f"project:{project}", f"folder:{folder}")


@dataclass
class Asset:
    name: str                  # full resource name
    asset_type: str
    node: str                  # localcloud.iam resource whose ancestry it has ("project:P", "serviceAccount:E")
    display_name: str = ""
    attributes: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)      # the resource as its service's API shows it (ListAssets, RESOURCE)
    create_time: Any = None                       # a protobuf Timestamp, where the service has one
    state: str = ""


class Inventory:
    def __init__(self, iam: Iam, identities: Identities, secrets_store: SecretStore | None = None) -> None:
        self.iam, self.identities, self.secrets = iam, identities, secrets_store
        self.assets: dict[str, Asset] = {}
        self.removed: set[str] = set()
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str | None, str]] = []     # (method, member, scope)

    # the local admin interface -----------------------------------------------------------------------------------
    def add(self, asset: Asset) -> Asset:
        with self.lock:
            self.assets[asset.name] = asset
            self.removed.discard(asset.name)
        return asset

    def remove(self, name: str) -> None:
        with self.lock:
            self.assets.pop(name, None)
            self.removed.add(name)

    def change(self, name: str, path: str, value: Any) -> None:
        """An attribute of a resource changed by hand after the apply (`path` dotted in its resource data, e.g.
        `iamConfiguration.publicAccessPrevention`), for what the local cloud's own services do not model."""
        import copy
        with self.lock:
            asset = self.assets[name]
            data = copy.deepcopy(asset.data)
            *parents, last = path.split(".")
            node = data
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
            self.assets[name] = Asset(asset.name, asset.asset_type, asset.node, asset.display_name,
                                      dict(asset.attributes), data, asset.create_time, asset.state)

    def perimeter(self, policy: str, name: str, fields: dict,
                  organization: str = DEFAULT_ORGANIZATION) -> Asset:
        """A service perimeter of the organization's access policy, as deployed: `fields` those of Access Context
        Manager's ServicePerimeter (`status` / `spec` with `restricted_services`, `resources`, ...,
        `use_explicit_dry_run_spec`). Replaces one of the same name (a perimeter changed after the apply)."""
        full = f"//accesscontextmanager.googleapis.com/accessPolicies/{policy}/servicePerimeters/{name}"
        return self.add(Asset(full, PERIMETER_TYPE, f"organization:{organization}", name,
                              data={"name": f"accessPolicies/{policy}/servicePerimeters/{name}", "title": name,
                                    **fields}))

    def grant(self, member: str, role: str, resource: str) -> None:
        """A binding added by hand after the apply (`resource` as localcloud.iam writes it: `folder:F`,
        `organization:O`, `project:P`, `secret:S`, `serviceAccount:E`, `bucket:B`)."""
        self.iam.grants.add(member, role, resource)

    def create_key(self, email: str) -> str:
        """A user-managed key of the account, made outside Terraform; returns its full resource name."""
        project = self.iam.project_of(f"serviceAccount:{email}")
        key = secrets.token_hex(20)
        account = f"//iam.googleapis.com/projects/{project}/serviceAccounts/{unique_id(email)}"
        return self.add(Asset(f"{account}/keys/{key}",
                              "iam.googleapis.com/ServiceAccountKey", f"serviceAccount:{email}", key,
                              {"keyType": "USER_MANAGED"})).name

    # from the plan ---------------------------------------------------------------------------------------------------
    def load_plan(self, plan: Plan, region: str) -> None:
        """What the apply created: the projects, the stacks' secrets, accounts, buckets, network attachments and
        proxy rules."""
        for project in sorted(self.iam.projects):
            self.add(Asset(f"{CRM}projects/{project}", "cloudresourcemanager.googleapis.com/Project",
                           f"project:{project}", project, {"projectId": project}))
        for r in plan.of_type("google_service_account"):
            v = plan.resolved(r)
            project = v.get("project") or self.iam.default_project
            email = f"{v['account_id']}@{project}.iam.gserviceaccount.com"
            self.add(Asset(f"//iam.googleapis.com/projects/{project}/serviceAccounts/{unique_id(email)}",
                           "iam.googleapis.com/ServiceAccount", f"serviceAccount:{email}", email, {"email": email}))
        for r in plan.of_type("google_storage_bucket"):
            name = plan.resolved(r)["name"]
            v = plan.resolved(r)
            self.add(Asset(f"//storage.googleapis.com/{name}", "storage.googleapis.com/Bucket", f"bucket:{name}",
                           name, data={"name": name, "iamConfiguration": {
                               "uniformBucketLevelAccess": {"enabled": bool(v.get("uniform_bucket_level_access"))},
                               "publicAccessPrevention": str(v.get("public_access_prevention") or "inherited")}}))
        for r in plan.of_type("google_compute_network_attachment"):
            v = plan.resolved(r)
            project = v.get("project") or self.iam.default_project
            self.add(Asset(f"//compute.googleapis.com/projects/{project}/regions/{v.get('region') or region}/"
                           f"networkAttachments/{v['name']}", "compute.googleapis.com/NetworkAttachment",
                           f"project:{project}", v["name"]))
        for r in plan.of_type("google_network_security_gateway_security_policy_rule"):
            v = plan.resolved(r)
            project = v.get("project") or self.iam.default_project
            policy = str(v.get("gateway_security_policy", "")).rsplit("/", 1)[-1]
            self.add(Asset(f"//networksecurity.googleapis.com/projects/{project}/locations/"
                           f"{v.get('location') or region}/gatewaySecurityPolicies/{policy}/rules/{v['name']}",
                           "networksecurity.googleapis.com/GatewaySecurityPolicyRule", f"project:{project}",
                           v["name"], data={k: v[t] for t, k in (
                               ("priority", "priority"), ("session_matcher", "sessionMatcher"),
                               ("application_matcher", "applicationMatcher"), ("basic_profile", "basicProfile"),
                               ("enabled", "enabled")) if v.get(t) is not None}))

    # what the service answers ----------------------------------------------------------------------------------------
    def _node(self, scope: str) -> str | None:
        kind, _, ident = scope.partition("/")
        if kind == "projects" and ident and self.iam.known(ident):
            return f"project:{self.iam.project_id(ident)}"
        if kind in ("folders", "organizations") and ident:
            return f"{kind[:-1]}:{ident}"
        return None

    def _where(self, node: str) -> tuple[str, list[str], str]:
        """(projects/NUMBER or "", folders, organization) of a node, as search results carry them."""
        chain = self.iam.ancestors(node)
        project = next((n.split(":", 1)[1] for n in chain if n.startswith("project:")), "")
        folders = [f"folders/{n.split(':', 1)[1]}" for n in chain if n.startswith("folder:")]
        org = next((f"organizations/{n.split(':', 1)[1]}" for n in chain if n.startswith("organization:")), "")
        return (f"projects/{self.iam.number(project)}" if project else ""), folders, org

    def _full_name(self, node: str) -> tuple[str, str]:
        kind, _, ident = node.partition(":")
        if kind in ("project", "folder", "organization"):
            return f"{CRM}{kind}s/{ident}", f"cloudresourcemanager.googleapis.com/{kind.capitalize()}"
        if kind == "secret":
            number = self.iam.number(self.iam.project_of(node))
            return f"//secretmanager.googleapis.com/projects/{number}/secrets/{ident}", \
                "secretmanager.googleapis.com/Secret"
        if kind == "serviceAccount":
            project = self.iam.project_of(node)
            return f"//iam.googleapis.com/projects/{project}/serviceAccounts/{unique_id(ident)}", \
                "iam.googleapis.com/ServiceAccount"
        if kind == "bucket":
            return f"//storage.googleapis.com/{ident}", "storage.googleapis.com/Bucket"
        if kind == "pubsub_topic":
            return f"//pubsub.googleapis.com/projects/{self.iam.project_of(node)}/topics/{ident}", \
                "pubsub.googleapis.com/Topic"
        if kind == "kms_crypto_key":
            return f"//cloudkms.googleapis.com/{ident}", "cloudkms.googleapis.com/CryptoKey"
        return f"//{kind}/{ident}", kind

    def _authorize(self, member: str | None, permission: str, scope: str) -> str:
        node = self._node(scope)
        if member is None:
            raise _Denied(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.")
        if node is None or not self.iam.allows(member, permission, node):
            raise _Denied(grpc.StatusCode.PERMISSION_DENIED,
                          f"The caller does not have permission ({permission} on {scope})")
        return node

    def search_all_iam_policies(self, member: str | None,
                                request: A.SearchAllIamPoliciesRequest) -> A.SearchAllIamPoliciesResponse:
        self.calls.append(("SearchAllIamPolicies", member, request.scope))
        scope = self._authorize(member, SEARCH_IAM, request.scope)
        only = request.query.removeprefix("resource=").strip() if request.query.startswith("resource=") else ""
        by_node: dict[str, dict[str, list[str]]] = {}
        under: dict[str, bool] = {}
        for m, role, res in sorted(self.iam.grants.triples):
            if res == TOP:
                continue
            if res not in under:
                under[res] = scope in self.iam.ancestors(res)
            if under[res]:      # a service agent as Google names it: by its project's number
                member = AGENT.sub(lambda x: self.iam.number(x.group(1)), m)
                by_node.setdefault(res, {}).setdefault(role, []).append(member)
        results = []
        for node, roles in sorted(by_node.items()):
            name, asset_type = self._full_name(node)
            if only and name != only:
                continue
            project, folders, org = self._where(node)
            policy = policy_pb2.Policy(bindings=[policy_pb2.Binding(role=role, members=members)
                                                 for role, members in sorted(roles.items())])
            results.append(A.IamPolicySearchResult(resource=name, asset_type=asset_type, project=project,
                                                   folders=folders, organization=org, policy=policy))
        page, token = _page(results, request.page_size, request.page_token, 500)
        return A.SearchAllIamPoliciesResponse(results=page, next_page_token=token)

    def search_all_resources(self, member: str | None,
                             request: A.SearchAllResourcesRequest) -> A.SearchAllResourcesResponse:
        self.calls.append(("SearchAllResources", member, request.scope))
        scope = self._authorize(member, SEARCH_RESOURCES, request.scope)
        results = []
        for a, (project, folders, org) in self._assets_under(scope, request.asset_types):
            results.append(A.ResourceSearchResult(name=a.name, asset_type=a.asset_type, project=project,
                                                  folders=folders, organization=org, display_name=a.display_name,
                                                  state=a.state, create_time=a.create_time,
                                                  **({"additional_attributes": a.attributes} if a.attributes
                                                     else {})))
        page, token = _page(results, request.page_size, request.page_token, 500)
        return A.SearchAllResourcesResponse(results=page, next_page_token=token)

    def _assets_under(self, scope: str, asset_types):
        """The assets (secret versions included) under `scope`, of `asset_types` (all when empty), by name, each
        with where it sits (project, folders, organization)."""
        types = set(asset_types)
        with self.lock:
            assets = list(self.assets.values()) + self._versions()
        for a in sorted(assets, key=lambda a: a.name):
            if (not types or a.asset_type in types) and scope in self.iam.ancestors(a.node):
                yield a, self._where(a.node)

    def _versions(self) -> list[Asset]:
        """Secrets and their versions, as Secret Manager holds them now (versions are added after the apply)."""
        if self.secrets is None:
            return []
        out = []
        with self.secrets.lock:
            held = list(self.secrets.secrets.items())
        for key, s in held:
            node = f"secret:{s.secret_id}"
            number = self.iam.number(self.iam.project_of(node))
            name = f"//secretmanager.googleapis.com/projects/{number}/secrets/{s.secret_id}"
            if name in self.removed:
                continue
            out.append(Asset(name, "secretmanager.googleapis.com/Secret", node, s.secret_id,
                             data=_secret_data(s), create_time=s.created))
            out += [Asset(f"{name}/versions/{v.number}", "secretmanager.googleapis.com/SecretVersion", node,
                          str(v.number), {"state": str(v.state)}, create_time=v.created,
                          state=sm.SecretVersion.State(v.state).name) for v in s.versions]
        return out

    def list_assets(self, member: str | None, request: A.ListAssetsRequest) -> A.ListAssetsResponse:
        """ListAssets with content type RESOURCE: each asset with its resource data as its service's API shows it
        (a bucket's iamConfiguration, a secret's replication and rotation, a proxy rule's matchers and priority).
        Other content types (IAM_POLICY, ACCESS_POLICY, ...) are not served: INVALID_ARGUMENT."""
        self.calls.append(("ListAssets", member, request.parent))
        unknown = sorted(set(request.asset_types) - LISTED_TYPES)
        if unknown:
            raise _Denied(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid asset type: {unknown[0]}")
        if request.content_type == A.ContentType.ACCESS_POLICY:
            return self._access_policies(member, request)
        scope = self._authorize(member, LIST_RESOURCE, request.parent)
        if request.content_type != A.ContentType.RESOURCE:
            raise _Denied(grpc.StatusCode.INVALID_ARGUMENT, f"content type {request.content_type.name} is not"
                          " served by the local Cloud Asset Inventory (only RESOURCE)")
        results = []
        for a, (project, folders, org) in self._assets_under(scope, request.asset_types):
            data = struct_pb2.Struct()
            data.update(a.data)
            results.append(A.Asset(name=a.name, asset_type=a.asset_type,
                                   ancestors=[x for x in [project, *folders, org] if x],
                                   resource=A.Resource(version="v1", data=data)))
        page, token = _page(results, request.page_size, request.page_token, 1000)
        return A.ListAssetsResponse(assets=page, next_page_token=token)

    def _access_policies(self, member: str | None, request: A.ListAssetsRequest) -> A.ListAssetsResponse:
        from google.identity.accesscontextmanager.v1 import service_perimeter_pb2
        from google.protobuf import json_format
        scope = self._authorize(member, LIST_ACCESS_POLICY, request.parent)
        types = set(request.asset_types)
        with self.lock:
            assets = [a for a in self.assets.values() if a.asset_type == PERIMETER_TYPE]
        results = []
        for a in sorted(assets, key=lambda a: a.name):
            if (types and a.asset_type not in types) or scope not in self.iam.ancestors(a.node):
                continue
            _, _, org = self._where(a.node)
            perimeter = json_format.ParseDict(a.data, service_perimeter_pb2.ServicePerimeter())
            results.append(A.Asset(name=a.name, asset_type=a.asset_type, ancestors=[org] if org else [],
                                   service_perimeter=perimeter))
        page, token = _page(results, request.page_size, request.page_token, 1000)
        return A.ListAssetsResponse(assets=page, next_page_token=token)


def _secret_data(s: Any) -> dict:
    """A secret as Secret Manager's REST API shows it: replication and rotation (camelCase, durations as "Ns")."""
    rep = s.replication
    if "user_managed" in rep:
        replication: dict = {"userManaged": {"replicas": [{"location": r.location}
                                                          for r in rep.user_managed.replicas]}}
    else:
        replication = {"automatic": {}}
    out: dict = {"replication": replication}
    if s.rotation is not None and s.rotation.rotation_period:
        out["rotation"] = {"rotationPeriod": f"{int(s.rotation.rotation_period.total_seconds())}s"}
    return out


class _Denied(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _page(results: list, size: int, token: str, most: int) -> tuple[list, str]:
    start = int(token or 0)
    size = min(size or 100, most)
    end = start + size
    return results[start:end], (str(end) if end < len(results) else "")


def grpc_handler(inventory: Inventory) -> grpc.GenericRpcHandler:
    def method(request_cls: Any, response_cls: Any, fn: Callable) -> grpc.RpcMethodHandler:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            member = inventory.identities.member_for(dict(context.invocation_metadata()).get("authorization"))
            try:
                return fn(member, request)
            except _Denied as err:
                context.abort(err.code, err.message)
        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=request_cls.deserialize,
                                                   response_serializer=response_cls.serialize)
    return grpc.method_handlers_generic_handler(SERVICE, {
        "SearchAllIamPolicies": method(A.SearchAllIamPoliciesRequest, A.SearchAllIamPoliciesResponse,
                                       inventory.search_all_iam_policies),
        "SearchAllResources": method(A.SearchAllResourcesRequest, A.SearchAllResourcesResponse,
                                     inventory.search_all_resources),
        "ListAssets": method(A.ListAssetsRequest, A.ListAssetsResponse, inventory.list_assets),
    })

"""Review what is deployed, not only what is planned (`hfgate review --live`).

Reads the deployed state through Cloud Asset Inventory (the official client, `jobs.endpoints.asset`): the IAM
policies of every project the stacks use and of each of its ancestors (folders, organization), and the resources
the stacks own (secrets and their versions, service accounts and their keys, buckets, network attachments, proxy
rules). Then the same review as the plan's (review.report: token paths, policies, team isolation) runs over the plan
**plus** what is deployed and not planned, and every finding that only the deployed state makes is named with where
it comes from (`inherited from folders/123`, `on the secret ..., not in the plan`, `key created outside Terraform`).
A drift table compares what the stacks own, plan against deployed.

Whatever the caller may not read (PERMISSION_DENIED on a scope) is an UNKNOWN that fails the review unless
accepted (its address is the scope: `folders/123`), never skipped.

The VPC Service Controls perimeter is listed with content type ACCESS_POLICY at each organization above the
projects and judged by the egress model as deployed (`_perimeter`); the attributes of owned resources (a bucket's
public access prevention, a secret's rotation, a proxy rule's matcher) come from ListAssets' resource data.

Not read (README, what --live does not see): IAM conditions, deny policies, group membership, grants on other
resource kinds (topics, subnets, KMS keys, network attachments, repositories) and Artifact Registry repositories.
Who added each token secret version comes from Cloud Logging's Admin Activity audit log (`_read_audit`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from review.graph import iam as plan_grants
from review.plan import Plan, Resource

# What the stacks own, by Cloud Asset Inventory asset type (cloud.google.com/asset-inventory/docs/asset-types).
PROJECT_TYPE = "cloudresourcemanager.googleapis.com/Project"
OWNED_TYPES = (PROJECT_TYPE, "secretmanager.googleapis.com/Secret", "secretmanager.googleapis.com/SecretVersion",
               "iam.googleapis.com/ServiceAccount", "iam.googleapis.com/ServiceAccountKey",
               "storage.googleapis.com/Bucket", "compute.googleapis.com/NetworkAttachment",
               "networksecurity.googleapis.com/GatewaySecurityPolicyRule")
# A deployed grant's target, from its full resource name: (pattern, kind, the Terraform IAM type that declares it).
TARGETS = (
    (re.compile(r"//cloudresourcemanager\.googleapis\.com/organizations/([^/]+)"), "organization",
     "google_organization_iam_member"),
    (re.compile(r"//cloudresourcemanager\.googleapis\.com/folders/([^/]+)"), "folder", "google_folder_iam_member"),
    (re.compile(r"//cloudresourcemanager\.googleapis\.com/projects/([^/]+)"), "project", "google_project_iam_member"),
    (re.compile(r"//secretmanager\.googleapis\.com/projects/[^/]+/secrets/([^/]+)"), "secret",
     "google_secret_manager_secret_iam_member"),
    (re.compile(r"//iam\.googleapis\.com/projects/[^/]+/serviceAccounts/([^/]+)"), "serviceAccount",
     "google_service_account_iam_member"),
    (re.compile(r"//storage\.googleapis\.com/([^/]+)"), "bucket", "google_storage_bucket_iam_member"),
    (re.compile(r"//pubsub\.googleapis\.com/projects/[^/]+/topics/([^/]+)"), "pubsub_topic",
     "google_pubsub_topic_iam_member"),
    (re.compile(r"//compute\.googleapis\.com/projects/[^/]+/regions/[^/]+/subnetworks/([^/]+)"),
     "compute_subnetwork", "google_compute_subnetwork_iam_member"),
    (re.compile(r"//cloudkms\.googleapis\.com/(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+)"),
     "kms_crypto_key", "google_kms_crypto_key_iam_member"),
)
# The argument of each Terraform IAM type that names its target (review.graph reads it back the same way).
TARGET_ARG = {"organization": "org_id", "folder": "folder", "project": "project", "secret": "secret_id",
              "serviceAccount": "service_account_id", "bucket": "bucket", "pubsub_topic": "topic",
              "compute_subnetwork": "subnetwork", "kms_crypto_key": "crypto_key_id"}
SERVICE_AGENT = re.compile(r"\(number of ([^)]+)\)")
VERSION_TYPE = "secretmanager.googleapis.com/SecretVersion"
# Resource data the drift table compares, by asset type: (what the plan sets, the field of the resource's REST
# representation, as ListAssets' Resource.data holds it). Storage JSON API Bucket, Secret Manager Secret, Network
# Security GatewaySecurityPolicyRule.
ATTRIBUTES = {
    "storage.googleapis.com/Bucket": (("uniform_bucket_level_access", "iamConfiguration.uniformBucketLevelAccess.enabled"),
                                      ("public_access_prevention", "iamConfiguration.publicAccessPrevention")),
    "secretmanager.googleapis.com/Secret": (("replication", "replication"),
                                            ("rotation.rotation_period", "rotation.rotationPeriod")),
    "networksecurity.googleapis.com/GatewaySecurityPolicyRule": (
        ("priority", "priority"), ("session_matcher", "sessionMatcher"),
        ("application_matcher", "applicationMatcher"), ("basic_profile", "basicProfile"), ("enabled", "enabled")),
}
DATA_TYPES = tuple(ATTRIBUTES)
# The VPC Service Controls perimeter: an Access Context Manager asset of the organization's access policy, listed
# with content type ACCESS_POLICY at the organization (Asset.service_perimeter).
PERIMETER_TYPE = "accesscontextmanager.googleapis.com/ServicePerimeter"
PLAN_PERIMETER = "google_access_context_manager_service_perimeter"


@dataclass
class Deployed:
    """What Cloud Asset Inventory showed: bindings (member, role, kind:id target, full resource name), resources
    (full name -> (asset type, display name, attributes)), project numbers, ancestry and what could not be read."""
    bindings: list[tuple[str, str, str, str]] = field(default_factory=list)
    resources: dict[str, tuple[str, str, dict]] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)           # project id -> number
    ancestors: dict[str, list[str]] = field(default_factory=dict)   # project id -> [folders/..., organizations/...]
    scopes_read: list[str] = field(default_factory=list)
    unknowns: list[dict] = field(default_factory=list)
    emails: dict[str, str] = field(default_factory=dict)            # an account's unique id -> its email
    data: dict[str, dict] = field(default_factory=dict)             # full name -> resource data (ListAssets)
    versions: list[dict] = field(default_factory=list)              # the secrets' versions: create time, state
    perimeters: dict[str, dict] = field(default_factory=dict)       # full name -> ServicePerimeter (proto fields)
    perimeters_read: list[str] = field(default_factory=list)        # organizations whose access policies were read
    # Who added or enabled each version, from the Admin Activity audit log: (secret id, version number) -> entries
    # ({"method", "principal", "timestamp"}); projects whose audit log could not be read -> why.
    audit: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    audit_unread: dict[str, str] = field(default_factory=dict)
    audit_read: list[str] = field(default_factory=list)


def _target(full_name: str, ids: dict[str, str], emails: dict[str, str]) -> tuple[str, str] | None:
    for pattern, kind, _ in TARGETS:
        m = pattern.fullmatch(full_name)
        if m:
            ident = m.group(1)
            if kind == "project":
                ident = ids.get(ident, ident)          # a project's number, as its id
            if kind == "serviceAccount" and "@" not in ident:
                ident = emails.get(ident, ident)       # a unique id, as the account's email
            return kind, ident
    return None


def read(projects: list[str], client: Any = None, retry_s: float = 60.0) -> Deployed:
    """The deployed state of `projects` and their ancestors, as far as the caller may read it. A call the service
    does not answer is retried for `retry_s` (unavailable, deadline exceeded), then raises Transient."""
    from google.api_core import exceptions as gexc
    from jobs.endpoints import asset
    from jobs.errors import Transient
    from google.api_core.retry import Retry, if_exception_type
    retry = Retry(initial=0.2, maximum=5.0, multiplier=2.0, timeout=retry_s,
                  predicate=if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded))
    client = _answering(client or asset(), gexc, Transient, retry)
    d = Deployed()

    def denied(scope: str, what: str, exc: Exception) -> None:
        d.unknowns.append({"address": scope, "field": what, "value": type(exc).__name__,
                           "why": f"the caller may not {what} on {scope} ({type(exc).__name__}: Cloud Asset"
                                  f" Inventory answered {getattr(exc, 'message', exc)}): what it holds cannot be"
                                  " judged; grant the reviewing identity roles/cloudasset.viewer there, or accept"
                                  " it with a reason"})
    results = []
    for project in projects:
        scope = f"projects/{project}"
        try:
            found = list(client.search_all_resources(request={"scope": scope, "asset_types": list(OWNED_TYPES),
                                                              "page_size": 500}))
        except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
            denied(scope, "searchAllResources", exc)
            d.unknowns.append({"address": f"{scope} (ancestry)", "field": "folders, organization",
                               "value": "unread", "why": f"the folders and organization above {scope} could not be"
                               " read, so grants inherited from them cannot be judged"})
            continue
        for r in found:
            d.resources[r.name] = (r.asset_type, r.display_name, dict(r.additional_attributes or {}))
            if r.asset_type == VERSION_TYPE:
                created = r.create_time
                d.versions.append({"version": r.name.removeprefix("//secretmanager.googleapis.com/"),
                                   "state": r.state or str((r.additional_attributes or {}).get("state", "")),
                                   "created": created.isoformat() if created else ""})
            # Every result carries its project's number, folders and organization; the project's own result
            # (a search at its own scope finds it) is preferred.
            if r.asset_type == PROJECT_TYPE or project not in d.ancestors:
                if r.project:
                    d.numbers[project] = r.project.removeprefix("projects/")
                d.ancestors[project] = [*r.folders, *([r.organization] if r.organization else [])]
        if project not in d.ancestors:
            d.unknowns.append({"address": f"{scope} (ancestry)", "field": "folders, organization",
                               "value": "not shown", "why": f"Cloud Asset Inventory showed nothing in {scope}, so"
                               " the folders and organization above it (and what they grant) are not known"})
        d.scopes_read.append(f"{scope} (resources)")
        try:        # the attributes drift compares: ListAssets with content type RESOURCE (resource data)
            for a in client.list_assets(request={"parent": scope, "asset_types": list(DATA_TYPES),
                                                 "content_type": "RESOURCE", "page_size": 1000}):
                d.data[a.name] = _plain(a.resource.data)
            d.scopes_read.append(f"{scope} (resource data)")
        except (gexc.PermissionDenied, gexc.Unauthenticated, gexc.InvalidArgument) as exc:
            denied(scope, "listAssets", exc)
        try:
            results += list(client.search_all_iam_policies(request={"scope": scope, "page_size": 500}))
            d.scopes_read.append(f"{scope} (IAM policies)")
        except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
            denied(scope, "searchAllIamPolicies", exc)
    for node in sorted({a for chain in d.ancestors.values() for a in chain}):
        try:
            own = f"//cloudresourcemanager.googleapis.com/{node}"       # the ancestor's own policy, not those below
            results += [r for r in client.search_all_iam_policies(request={"scope": node, "query": f"resource={own}",
                                                                          "page_size": 500}) if r.resource == own]
            d.scopes_read.append(f"{node} (IAM policy)")
        except (gexc.PermissionDenied, gexc.Unauthenticated) as exc:
            denied(node, "searchAllIamPolicies", exc)
    for org in sorted({a for chain in d.ancestors.values() for a in chain if a.startswith("organizations/")}):
        try:
            from google.protobuf import json_format
            for a in client.list_assets(request={"parent": org, "asset_types": [PERIMETER_TYPE],
                                                 "content_type": "ACCESS_POLICY", "page_size": 1000}):
                d.perimeters[a.name] = json_format.MessageToDict(a.service_perimeter,
                                                                 preserving_proto_field_name=True)
            d.perimeters_read.append(org)
            d.scopes_read.append(f"{org} (access policy)")
        except (gexc.PermissionDenied, gexc.Unauthenticated, gexc.InvalidArgument) as exc:
            denied(org, "listAssets (ACCESS_POLICY)", exc)
    ids = {n: pid for pid, n in d.numbers.items()}
    emails = d.emails = {name.rsplit("/", 1)[-1]: str(attrs.get("email")) for name, (t, _, attrs)
                         in d.resources.items() if t == "iam.googleapis.com/ServiceAccount" and attrs.get("email")}
    for r in results:
        target = _target(r.resource, ids, emails)
        if target is None:
            continue
        for b in r.policy.bindings:
            for m in b.members:
                d.bindings.append((m, b.role, f"{target[0]}:{target[1]}", r.resource))
    if d.versions:
        for project in projects:
            _read_audit(project, d)
    return d


# Secret Manager's version writes, in the Admin Activity audit log (cloud.google.com/secret-manager/docs/audit-logging:
# AddSecretVersion and EnableSecretVersion are ADMIN_WRITE; Admin Activity logs are always written and kept 400 days,
# cloud.google.com/logging/docs/routing/overview#logs-retention; reading them needs roles/logging.viewer,
# cloud.google.com/logging/docs/audit#access-control).
AUDIT_METHODS = ("google.cloud.secretmanager.v1.SecretManagerService.AddSecretVersion",
                 "google.cloud.secretmanager.v1.SecretManagerService.EnableSecretVersion")
_VERSION_NAME = re.compile(r"projects/[^/]+/secrets/([^/]+)/versions/(\d+)")


def _principal(email: str) -> str:
    """An audit entry's principalEmail as an IAM member."""
    return f"serviceAccount:{email}" if email.endswith(".gserviceaccount.com") else f"user:{email}"


def _read_audit(project: str, d: Deployed) -> None:
    """Cloud Logging entries:list (REST, the call jobs.vertex makes for job logs) of the project's Admin Activity
    audit log, Secret Manager's entries only. Refused: the project is recorded in d.audit_unread (its versions are
    UNKNOWN, from review); unanswered: Transient."""
    import google.auth.transport.requests

    from jobs import endpoints
    from jobs.errors import Transient
    session = google.auth.transport.requests.AuthorizedSession(endpoints.credentials())
    body: dict = {"resourceNames": [f"projects/{project}"], "orderBy": "timestamp asc", "pageSize": 1000,
                  "filter": f'logName="projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"'
                            ' AND protoPayload.serviceName="secretmanager.googleapis.com"'}
    while True:
        try:
            resp = session.post(f"{endpoints.googleapis_rest('logging')}/v2/entries:list", json=body, timeout=30)
        except Exception as exc:       # requests' connection errors: the service did not answer
            raise Transient(f"Cloud Logging did not answer entries:list on projects/{project}: {exc}",
                            "retry later; check that logging.googleapis.com is reachable") from None
        if resp.status_code in (401, 403):
            d.audit_unread[project] = f"HTTP {resp.status_code}: " + str(
                (resp.json() if resp.content else {}).get("error", {}).get("message", ""))[:200]
            return
        if resp.status_code != 200:
            raise Transient(f"Cloud Logging answered entries:list on projects/{project} with HTTP"
                            f" {resp.status_code}", "retry later (a 429 is the project's read quota)")
        page = resp.json()
        for e in page.get("entries", []):
            p = e.get("protoPayload") or {}
            m = _VERSION_NAME.fullmatch(str(p.get("resourceName", "")))
            if p.get("methodName") not in AUDIT_METHODS or not m:
                continue
            email = str((p.get("authenticationInfo") or {}).get("principalEmail", ""))
            d.audit.setdefault((m.group(1), m.group(2)), []).append(
                {"method": str(p["methodName"]).rsplit(".", 1)[-1], "principal": _principal(email) if email else "",
                 "timestamp": e.get("timestamp", "")})
        if not page.get("nextPageToken"):
            d.audit_read.append(project)
            return
        body["pageToken"] = page["nextPageToken"]


class _answering:
    """The client, whose calls that fail for another reason than a refusal (the service unreachable, a deadline)
    raise Transient (exit 6) with what to do, instead of an internal error."""

    def __init__(self, client: Any, gexc: Any, transient: Any, retry: Any) -> None:
        self._client, self._gexc, self._transient, self._retry = client, gexc, transient, retry

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kw: Any) -> list:
            try:
                return list(method(**kw, retry=self._retry))
            except (self._gexc.PermissionDenied, self._gexc.Unauthenticated):
                raise
            except self._gexc.InvalidArgument:
                if name == "list_assets":       # an asset type or content type refused: UNKNOWN, from read
                    raise
                raise self._transient_of(name, kw) from None
            except (self._gexc.GoogleAPIError, self._gexc.RetryError) as exc:
                raise self._transient(f"Cloud Asset Inventory did not answer {name} on"
                                      f" {kw.get('request', {}).get('scope') or kw.get('request', {}).get('parent')}:"
                                      f" {type(exc).__name__}: {exc}",
                                      "retry later; check that cloudasset.googleapis.com is enabled in the quota"
                                      " project and reachable (HFGATE_ASSET_ENDPOINT, when set, names the endpoint)"
                                      ) from None
        return call

    def _transient_of(self, name: str, kw: dict) -> Exception:
        request = kw.get("request", {})
        return self._transient(f"Cloud Asset Inventory refused {name} on {request.get('scope') or request.get('parent')}"
                               " as an invalid argument", "check the endpoint (HFGATE_ASSET_ENDPOINT) and the"
                               " client version; report it if it persists")


def origin(resource: str, plan_projects: set[str]) -> str:
    kind, _, ident = resource.partition(":")
    if kind in ("folder", "organization"):
        return f"inherited from {kind}s/{ident}"
    if kind == "project":
        return f"on projects/{ident}, not in the plan" + ("" if ident in plan_projects else
                                                          " (a project the stacks do not declare)")
    label = {"secret": "the secret", "serviceAccount": "the service account", "bucket": "the bucket",
             "pubsub_topic": "the topic", "compute_subnetwork": "the subnetwork",
             "kms_crypto_key": "the key"}.get(kind, kind)
    return f"on {label} {ident}, not in the plan (added after the apply)"


def _normalize(member: str, numbers: dict[str, str]) -> str:
    """A plan's service agent (`service-(number of P)@...`) as the deployed state names it."""
    return SERVICE_AGENT.sub(lambda m: numbers.get(m.group(1), m.group(0)), member)


def merge(plan: Plan, d: Deployed) -> tuple[Plan, dict[str, str], list[dict]]:
    """The plan plus every deployed grant it does not hold (as IAM resources under `deployed.`), their origins by
    address, and the drift table of grants and owned resources."""
    # Grants on the nodes the reader names (TARGETS: the hierarchy, secrets, accounts, buckets, topics, subnets,
    # KMS keys); the plan's grants on other kinds (CA pools, repositories) are not compared (README).
    kinds = {k for _, k, _ in TARGETS}
    planned = [g for g in plan_grants(plan)[0] if not g.unknown and g.scope in kinds]
    plan_set = {(_normalize(g.member, d.numbers), g.role, re.sub(r"^(folder|organization):(folders|organizations)/",
                                                                  r"\1:", g.resource)) for g in planned}
    deployed_set = {(m, role, res) for m, role, res, _ in d.bindings}
    projects = {p for p in d.ancestors} | {plan.default_project()}
    added, origins = [], {}
    extra = sorted(deployed_set - plan_set)
    for i, (member, role, res) in enumerate(extra):
        kind, _, ident = res.partition(":")
        rtype = next((t for _, k, t in TARGETS if k == kind), None)
        if rtype is None:
            continue
        values = {"role": role, "member": member,
                  TARGET_ARG[kind]: f"folders/{ident}" if kind == "folder" else ident}
        r = Resource(rtype, f"live_{i}", values, module="deployed")
        added.append(r)
        origins[r.address] = origin(res, projects)
    replaced, perimeter_rows = _perimeter(plan, d, origins)
    kept = [replaced.get(r.address, r) for r in plan.resources]
    merged = dataclasses.replace(plan, resources=[*(r for r in kept if r is not None), *added])
    drift = _grant_drift(plan_set, deployed_set, origins, added, d) + perimeter_rows
    drift += _resource_drift(plan, d)
    drift += _attribute_drift(plan, d)
    return merged, origins, drift


def _grant_drift(plan_set: set[tuple[str, str, str]], deployed_set: set[tuple[str, str, str]],
                 origins: dict[str, str], added: list[Resource], d: Deployed) -> list[dict]:
    read = {s.split(" ", 1)[0] for s in d.scopes_read if "IAM" in s}
    address = {(r.values["member"], r.values["role"], _res(r)): r.address for r in added}

    def visible(res: str) -> bool:       # a planned grant is missing only where its node's policy was read
        kind, _, ident = res.partition(":")
        return f"{kind}s/{ident}" in read if kind in ("folder", "organization") else \
            any(s.startswith("projects/") for s in read)
    by_target: dict[tuple[str, str], tuple[set, set]] = {}
    for m, role, res in plan_set:
        by_target.setdefault((m, res), (set(), set()))[0].add(role)
    for m, role, res in deployed_set:
        by_target.setdefault((m, res), (set(), set()))[1].add(role)
    rows = []
    for (m, res), (planned, deployed) in sorted(by_target.items()):
        if planned == deployed:
            continue
        if planned and deployed:
            rows.append({"what": "grant", "change": "changed", "target": res, "member": m,
                         "plan": sorted(planned), "deployed": sorted(deployed),
                         "origin": origins.get(address.get((m, sorted(deployed - planned)[0], res), ""), "")
                         if deployed - planned else ""})
        elif planned and visible(res):
            rows.append({"what": "grant", "change": "missing", "target": res, "member": m, "plan": sorted(planned),
                         "deployed": [], "origin": ""})
        elif deployed:
            rows.append({"what": "grant", "change": "extra", "target": res, "member": m, "plan": [],
                         "deployed": sorted(deployed),
                         "origin": origins.get(address.get((m, sorted(deployed)[0], res), ""), "")})
    return rows


def _res(r: Resource) -> str:
    v = r.values
    for kind, key in TARGET_ARG.items():
        if key in v and kind != "folder":
            return f"{kind}:{v[key]}"
    return f"folder:{str(v.get('folder', '')).removeprefix('folders/')}"


def owned(plan: Plan) -> dict[tuple[str, str], str]:
    """What the plan declares, keyed as the drift table compares it: (kind, name) -> address."""
    out: dict[tuple[str, str], str] = {}
    for r in plan.of_type("google_secret_manager_secret"):
        out[("secret", str(plan.resolved(r).get("secret_id")))] = r.address
    for r in plan.of_type("google_service_account"):
        out[("serviceAccount", plan.attribute("google_service_account", r.name, "email"))] = r.address
    for r in plan.of_type("google_storage_bucket"):
        out[("bucket", str(plan.resolved(r).get("name")))] = r.address
    for r in plan.of_type("google_compute_network_attachment"):
        out[("networkAttachment", str(plan.resolved(r).get("name")))] = r.address
    for r in plan.of_type("google_network_security_gateway_security_policy_rule"):
        out[("proxyRule", str(plan.resolved(r).get("name")))] = r.address
    for r in plan.of_type("google_service_account_key"):
        out[("key", str(plan.resolved(r).get("service_account_id")).rsplit("/", 1)[-1])] = r.address
    return out


_KIND_OF = {"secretmanager.googleapis.com/Secret": "secret", "iam.googleapis.com/ServiceAccount": "serviceAccount",
            "storage.googleapis.com/Bucket": "bucket", "compute.googleapis.com/NetworkAttachment": "networkAttachment",
            "networksecurity.googleapis.com/GatewaySecurityPolicyRule": "proxyRule",
            "iam.googleapis.com/ServiceAccountKey": "key"}


def deployed_keys(d: Deployed) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, name) -> full resource name of what is deployed; a key is named by its account's email, and a key
    not reported USER_MANAGED (Google's own) is not the stacks'."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for name, (atype, display, attrs) in d.resources.items():
        kind = _KIND_OF.get(atype)
        if kind is None:
            continue
        if kind == "key":
            if str(attrs.get("keyType", "USER_MANAGED")) != "USER_MANAGED":
                continue
            account = name.split("/serviceAccounts/", 1)[1].split("/", 1)[0]
            out[("key", d.emails.get(account, account) + "#" + display)] = (name, atype)
        elif kind == "serviceAccount":
            out[(kind, str(attrs.get("email") or name.rsplit("/", 1)[-1]))] = (name, atype)
        else:
            out[(kind, display or name.rsplit("/", 1)[-1])] = (name, atype)
    return out


def _resource_drift(plan: Plan, d: Deployed) -> list[dict]:
    planned, deployed = owned(plan), deployed_keys(d)
    planned_keys = {name for (kind, name) in planned if kind == "key"}
    rows = []
    for (kind, name), address in sorted(planned.items()):
        if kind == "key":
            if not any(k == "key" and n.split("#", 1)[0] == name for k, n in deployed):
                rows.append({"what": kind, "change": "missing", "target": name, "plan": address, "deployed": "",
                             "origin": ""})
        elif (kind, name) not in deployed and kind != "proxyRule" or (kind == "proxyRule" and (kind, name) not in
                                                                       deployed and _reads_rules(d)):
            rows.append({"what": kind, "change": "missing", "target": name, "plan": address, "deployed": "",
                         "origin": ""})
    for (kind, name), (full, _atype) in sorted(deployed.items()):
        if kind == "key":
            email = name.split("#", 1)[0]
            if email in planned_keys:
                continue
            rows.append({"what": "key", "change": "extra", "target": email, "plan": "", "deployed": full,
                         "origin": "key created outside Terraform"})
        elif (kind, name) not in planned:
            rows.append({"what": kind, "change": "extra", "target": name, "plan": "", "deployed": full,
                         "origin": "created outside Terraform"})
    return rows


def _perimeter_state(status: Any, spec: Any, explicit: Any) -> tuple[str, list[str]]:
    """(mode, restricted services) of a perimeter's configuration, plan's (Terraform blocks) or deployed
    (ServicePerimeter fields): the enforced `status`, else a dry-run `spec`."""
    def block(v: Any) -> dict:
        if isinstance(v, list):
            return v[0] if v and isinstance(v[0], dict) else {}
        return v if isinstance(v, dict) else {}
    status, spec = block(status), block(spec)
    if status and (status.get("resources") or status.get("restricted_services")):
        return "enforced", sorted(status.get("restricted_services") or [])
    if spec:
        return "dry-run only", sorted(spec.get("restricted_services") or [])
    return "no configuration", []


def _perimeter(plan: Plan, d: Deployed, origins: dict[str, str]) -> tuple[dict[str, Resource | None], list[dict]]:
    """The plan's perimeter as deployed, for the egress model (review.egress_model.perimeter reads the merged plan):
    a deployed perimeter that differs from the plan (switched to dry-run, a service dropped from restricted
    services) replaces the planned one, under `deployed.`, with its origin; one not deployed is removed. Only where
    the organization's access policy was read (otherwise UNKNOWN, from read)."""
    from review.plan import unresolved
    replaced: dict[str, Resource | None] = {}
    rows: list[dict] = []
    if not d.perimeters_read:
        return replaced, rows
    from review.egress_model.perimeter import RESOURCE, _projects_outside
    by_number = {n: pid for pid, n in d.numbers.items()}
    for r in plan.of_type(PLAN_PERIMETER):
        v = plan.resolved(r)
        raw = r.values.get("status")
        raw = raw[0] if isinstance(raw, list) and raw and isinstance(raw[0], dict) else raw
        planned_res = [x for x in raw.get("resources") or [] if x] if isinstance(raw, dict) else []
        planned_res += [x.values.get("resource") for x in plan.of_type(RESOURCE)]
        wanted = {plan.default_project()} | set(d.numbers)
        planned_projects = (wanted - set(_projects_outside(plan, planned_res)[0])) & set(d.numbers)
        short = str(v.get("name") or v.get("title") or "").rsplit("/", 1)[-1]
        full = next((n for n in sorted(d.perimeters) if n.rsplit("/", 1)[-1] == short), None)
        if full is None:
            replaced[r.address] = None
            origins["output.egress_enforced"] = origins[r.address] = \
                f"the perimeter {short} is not deployed (deleted after the apply?)"
            rows.append({"what": "perimeter", "change": "missing", "target": short, "plan": r.address,
                         "deployed": "", "origin": origins[r.address]})
            continue
        got = d.perimeters[full]
        want_mode, want = _perimeter_state(v.get("status"), v.get("spec"), v.get("use_explicit_dry_run_spec"))
        if isinstance(v.get("status"), str) or unresolved(want):
            continue                          # the plan's own configuration is not known offline: nothing to compare
        got_mode, have = _perimeter_state(got.get("status"), got.get("spec"), got.get("use_explicit_dry_run_spec"))
        changes = []
        held = {by_number[x.removeprefix("projects/")] for x in
                ((got.get("status") or {}) if got_mode == "enforced" else (got.get("spec") or {})).get("resources", [])
                if x.removeprefix("projects/") in by_number}
        if planned_projects - held:
            changes.append(f"no longer holds {', '.join(sorted(planned_projects - held))}")
        if want_mode != got_mode:
            changes.append(f"{want_mode} in the plan, {got_mode} deployed")
        if set(want) - set(have):
            changes.append(f"no longer restricts {', '.join(sorted(set(want) - set(have)))}")
        if not changes:
            continue
        values = {"name": v.get("name"), "title": v.get("title"), "perimeter_type": got.get("perimeter_type"),
                  "status": _as_plan_refs(plan, got.get("status"), d) or None,
                  "spec": _as_plan_refs(plan, got.get("spec"), d) or None,
                  "use_explicit_dry_run_spec": bool(got.get("use_explicit_dry_run_spec"))}
        deployed = Resource(PLAN_PERIMETER, r.name, {k: x for k, x in values.items() if x is not None},
                            module="deployed")
        replaced[r.address] = deployed
        origin = f"the perimeter {full.removeprefix('//accesscontextmanager.googleapis.com/')} as deployed:" \
                 f" {'; '.join(changes)} (changed after the apply)"
        origins[deployed.address] = origin
        rows.append({"what": "perimeter", "change": "changed", "target": short,
                     "plan": f"{want_mode}; restricts {', '.join(want) or '-'}",
                     "deployed": f"{got_mode}; restricts {', '.join(have) or '-'}", "origin": origin})
    return replaced, rows


def _as_plan_refs(plan: Plan, config: Any, d: Deployed) -> Any:
    """A deployed perimeter configuration whose `projects/NUMBER` resources are named as the plan names its projects
    (a reference to its google_project data source or resource), where Cloud Asset Inventory showed that project's
    number; any other stays as deployed (the egress model reports it UNKNOWN)."""
    if not isinstance(config, dict):
        return config
    by_number = {n: pid for pid, n in d.numbers.items()}
    refs = {str(v.get("project_id")): f"${{data.google_project.{name}.number}}"
            for (t, name), v in plan.data.items() if t == "google_project"}
    refs.update({str(plan.resolved(r).get("project_id")): f"${{google_project.{r.name}.number}}"
                 for r in plan.of_type("google_project")})
    out = []
    for x in config.get("resources") or []:
        project = by_number.get(str(x).removeprefix("projects/"))
        out.append(f"projects/{refs[project]}" if project in refs else x)
    return dict(config, resources=out)


def _plain(value: Any) -> Any:
    """A protobuf Struct (or proto-plus map) as plain dicts and lists."""
    from google.protobuf import json_format, struct_pb2
    if isinstance(value, struct_pb2.Struct):
        return json_format.MessageToDict(value)
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "RepeatedComposite":
        return [_plain(v) for v in value]
    return value


def _dig(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(value, list):
            value = value[0] if value and isinstance(value[0], dict) else {}
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _norm(field_name: str, value: Any) -> Any:
    """One attribute, plan's or deployed, in a form both compare in (None: not set)."""
    if field_name == "replication":
        if isinstance(value, list):
            value = value[0] if value and isinstance(value[0], dict) else {}
        if not isinstance(value, dict) or not value:
            return None
        managed = value.get("user_managed") or value.get("userManaged")
        if managed:
            replicas = _dig(managed, "replicas") if isinstance(managed, dict) else None
            if isinstance(managed, list):
                replicas = (managed[0] if managed else {}).get("replicas")
            return "user-managed: " + ", ".join(sorted(str(r.get("location")) for r in replicas or []))
        return "automatic"
    if value is None or value == []:
        return None
    if field_name in ("priority",):
        return int(float(value))
    if field_name.endswith("rotation_period") or field_name.endswith("rotationPeriod"):
        return f"{int(float(str(value).removesuffix('s')))}s"
    if field_name == "public_access_prevention":
        return "inherited" if str(value) in ("unspecified", "") else str(value)
    if field_name in ("uniform_bucket_level_access", "enabled"):
        return bool(value)
    return value


def _attribute_drift(plan: Plan, d: Deployed) -> list[dict]:
    """"changed" rows: an attribute of an owned resource (ATTRIBUTES) that the plan sets and the deployed
    resource's data (ListAssets, RESOURCE) holds differently. Attributes the plan leaves to Terraform (unknown
    offline) are not compared; a resource whose data was not read is not either (its scope is UNKNOWN)."""
    from review.plan import unresolved
    by_address = {r.address: r for r in plan.resources}
    deployed = deployed_keys(d)
    rows = []
    for key, address in sorted(owned(plan).items()):
        if key not in deployed or key[0] == "key":
            continue
        full, atype = deployed[key]
        data = d.data.get(full)
        if data is None or atype not in ATTRIBUTES:
            continue
        values = plan.resolved(by_address[address])
        for plan_field, api_field in ATTRIBUTES[atype]:
            raw = _dig(values, plan_field)
            if raw is None or unresolved(raw):
                continue
            want, got = _norm(plan_field, raw), _norm(plan_field if plan_field == "replication" else api_field,
                                                     _dig(data, api_field))
            if want is None or want == got:
                continue
            rows.append({"what": key[0], "change": "changed", "target": f"{key[1]} {api_field}",
                         "plan": f"{address}: {want}", "deployed": f"{full}: {got if got is not None else '(unset)'}",
                         "origin": "changed after the apply (outside Terraform)"})
    return rows


def _reads_rules(d: Deployed) -> bool:
    return any(t == "networksecurity.googleapis.com/GatewaySecurityPolicyRule" for t, _, _ in d.resources.values())


def projects_of(plan: Plan) -> list[str]:
    """Every project the stacks use: the environment's (host) project and each team's."""
    from review.plan import team_views
    out = {plan.default_project()}
    for view in team_views(plan).values():
        for key in ("project_id", "host_project_id"):
            value = view.output(key)
            if isinstance(value, str) and value and "${" not in value:
                out.add(value)
    return sorted(p for p in out if p)


def _annotate(rows: list[dict], origins: dict[str, str]) -> list[dict]:
    found = []
    for row in rows:
        o = origins.get(row.get("address", ""))
        if o and "origin" not in row:
            row["origin"] = o
            if "how" in row:
                row["how"] = f"{row['how']} [{o}]"
            if "detail" in row:
                row["detail"] = f"{row['detail']} [{o}]"
            found.append(row)
    return found


def _key_paths(rep: dict, drift: list[dict]) -> list[dict]:
    """A key made outside the plan of an account that reaches a token (or a team's data) is a path: whoever holds
    the key acts as the account."""
    rows = []
    holders = {r["principal"] for r in rep.get("token_readers", []) + rep.get("token_writers", [])}
    wt = rep.get("write_token") or {}
    w_holders = {r["principal"] for r in wt.get("readers", []) + wt.get("writers", [])}
    for d in drift:
        if d["what"] != "key" or d["change"] != "extra":
            continue
        member = f"serviceAccount:{d['target']}"
        for which, held in (("token", holders), ("write token", w_holders)):
            if member in held:
                rows.append({"principal": f"resource:{d['deployed']}", "kind": "holds-key",
                             "how": f"a key of {d['target']}, which reaches the {which}: whoever holds the key acts"
                                    f" as it [{d['origin']}]", "via": member, "address": d["deployed"],
                             "role": "(service account key)", "impact": "high", "expected": False,
                             "origin": d["origin"], "which": which})
    return rows


VERSION_ADD = "secretmanager.versions.add"


def _version_paths(merged: Plan, d: Deployed) -> tuple[list[dict], list[dict]]:
    """Each enabled version of a token secret (read or write) judged by who added it (the Admin Activity audit
    log): a principal holding secretmanager.versions.add on the secret, its project or above in the plan plus the
    deployed grants passes; anyone else is a path (`added-version`) naming them. A version whose entry is missing
    (older than the log's 400 days, or written where the reviewer does not read) or whose project's log could not
    be read is UNKNOWN. Returns (paths, unknowns)."""
    from review.graph import Targets
    t = Targets.of(merged)
    which = {sid: w for sid, w in ((t.secret_id, "token"), (t.write_secret_id, "write token")) if sid}
    by_number = {n: pid for pid, n in d.numbers.items()}
    grants = [g for g in plan_grants(merged)[0] if g.perms and g.perms & {VERSION_ADD, "secretmanager.versions.enable"}]
    paths, unknowns = [], []
    for v in sorted(d.versions, key=lambda v: v["version"]):
        m = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)/versions/(\d+)", v["version"])
        if not m or m.group(2) not in which or str(v["state"]).rsplit(".", 1)[-1] != "ENABLED":
            continue
        project, sid, number = by_number.get(m.group(1), m.group(1)), m.group(2), m.group(3)
        if project in d.audit_unread:
            unknowns.append({"address": v["version"], "field": "added by", "value": "audit log unread",
                             "why": f"who added version {number} of {sid} cannot be judged: the Admin Activity audit"
                                    f" log of projects/{project} could not be read ({d.audit_unread[project]}); grant"
                                    " the reviewing identity roles/logging.viewer there, or accept it with a reason"})
            continue
        adders = [e for e in d.audit.get((sid, number), []) if e["method"] == "AddSecretVersion"]
        if not adders:
            unknowns.append({"address": v["version"], "field": "added by", "value": "no audit entry",
                             "why": f"no AddSecretVersion entry for version {number} of {sid} in the Admin Activity"
                                    f" audit log of projects/{project} (kept 400 days: older versions have none):"
                                    " who added it cannot be judged; replace it with `hfgate token set`, or accept"
                                    " it with a reason"})
            continue
        nodes = {f"secret:{sid}", f"project:{project}"}
        for a in d.ancestors.get(project, []):
            kind, _, ident = a.partition("/")
            nodes |= {f"{kind[:-1]}:{ident}", f"{kind[:-1]}:{a}"}
        for e in d.audit.get((sid, number), []):
            verb, perm = ("added", VERSION_ADD) if e["method"] == "AddSecretVersion" else \
                ("enabled", "secretmanager.versions.enable")
            if e["principal"] in {_normalize(g.member, d.numbers) for g in grants
                                  if g.resource in nodes and g.perms and perm in g.perms}:
                continue
            origin = (f"version {number} {verb} by {e['principal'] or '(no principal in the audit entry)'} at"
                      f" {e['timestamp']}, who holds no {perm} on the secret, its project or above in the plan or"
                      " the deployed grants (Admin Activity audit log)")
            paths.append({"principal": e["principal"], "kind": f"{verb}-version",
                          "how": f"{verb} version {number} of the {which[sid]}: its value is theirs [{origin}]",
                          "address": v["version"], "origin": origin, "which": which[sid]})
    return paths, unknowns


def review(plan: Plan, d: Deployed, accepts: dict | None = None, checkov: dict | None = None) -> dict:
    """The plan review (review.report.review) over the plan and the deployed state, with the deployed-only paths
    named by origin, the drift table, and what could not be read."""
    from review.report import review as plan_review
    accepts = accepts or {"unknown": [], "reader": []}
    merged, origins, drift = merge(plan, d)
    rep = plan_review(merged, checkov, accepts)
    named = []
    views = [rep, *(rep.get("teams") or {}).values()]
    for v in views:
        named += _annotate(v.get("token_readers", []) + v.get("token_writers", []), origins)
        wt = v.get("write_token") or {}
        named += _annotate(wt.get("readers", []) + wt.get("writers", []), origins)
    for p in rep["policies"]:
        named += _annotate(p["violations"], origins)
    access = (rep.get("isolation") or {}).get("access") or {}
    for key in ("cross_team", "no_team", "unknown"):
        named += _annotate(access.get(key, []), origins)
    named += _annotate((rep.get("isolation") or {}).get("cross_team", []), origins)
    for v in views:        # the egress model over the deployed perimeter: its findings name where it comes from
        for f in (v.get("egress") or {}).get("findings", []):
            o = origins.get(f.get("address", ""))
            if o and "origin" not in f:
                f["origin"], f["what"] = o, f"{f['what']} [{o}]"
            if o:
                named.append({"kind": "egress", "detail": f["what"], "address": f["address"], "origin": o})
    accepted_readers = {a["principal"] for a in accepts.get("reader", [])}
    keys = []
    for v in views:
        for row in _key_paths(v, drift):
            keys.append(row)
            # A team's lists may be the combined report's own (review.report shares them): add each row once.
            target = v["token_readers"] if row["which"] == "token" else v["write_token"]["readers"]
            if not any(r["principal"] == row["principal"] for r in target):
                target.append(row)
            if row["principal"] not in accepted_readers:
                bucket = v["unexpected_readers"] if row["which"] == "token" else \
                    v["write_token"]["unexpected_readers"]
                if row["principal"] not in bucket:
                    bucket.append(row["principal"])
                v["ok"] = False
    if keys and rep.get("teams"):
        teams = rep["teams"].values()
        rep["unexpected_readers"] = sorted({p for t in teams for p in t["unexpected_readers"]}
                                           | set(rep["unexpected_readers"]))
        rep["write_token"]["unexpected_readers"] = sorted(
            {p for t in teams for p in t["write_token"]["unexpected_readers"]}
            | set(rep["write_token"]["unexpected_readers"]))
    versions, version_unknowns = _version_paths(merged, d)
    for row in versions:        # a version whose adder the plan does not allow: the token's value is theirs
        keys.append(row)
        if row["principal"] not in accepted_readers:
            bucket = rep["unexpected_readers"] if row["which"] == "token" else rep["write_token"]["unexpected_readers"]
            if row["principal"] not in bucket:
                bucket.append(row["principal"])
    accepted_unknowns = {a["address"]: a["reason"] for a in accepts.get("unknown", [])}
    unknowns = [u | {"accepted": accepted_unknowns.get(u["address"])} for u in d.unknowns + version_unknowns]
    rep["unknowns"] = rep["unknowns"] + unknowns
    rep["unresolved"] = sorted(set(rep["unresolved"]) | {u["address"] for u in unknowns if not u["accepted"]})
    seen: set[tuple] = set()
    paths: list[dict] = []
    for row in named + keys:
        ident = (row.get("principal"), row.get("kind"), row.get("address"), row.get("detail"))
        if ident not in seen:
            seen.add(ident)
            paths.append({k: row.get(k) for k in ("principal", "kind", "how", "detail", "address", "origin")
                          if row.get(k) is not None})
    rep["live"] = {"scopes_read": d.scopes_read, "projects": dict(d.numbers), "ancestry": d.ancestors,
                   "bindings": len(d.bindings), "resources": len(d.resources),
                   "unknowns": unknowns, "deployed_only_paths": paths, "drift": drift,
                   "secret_versions": [v | {"added_by": _added_by(v, d)} for v in
                                       sorted(d.versions, key=lambda v: v["version"])]}
    rep["source"] = f"{rep.get('source')} + deployed (Cloud Asset Inventory)"
    rep["ok"] = bool(rep["ok"] and all(r["principal"] in accepted_readers for r in keys)
                     and all(u["accepted"] for u in unknowns))
    return rep


def _added_by(v: dict, d: Deployed) -> str:
    m = _VERSION_NAME.fullmatch(v["version"])
    if not m:
        return ""
    entries = d.audit.get((m.group(1), m.group(2)), [])
    return ", ".join(f"{e['principal']} ({e['method']})" for e in entries)


def markdown(live: dict) -> list[str]:
    """The report's section on the deployed state (review.report.to_markdown appends it)."""
    from review.report import _table
    out = ["", "## Deployed state (Cloud Asset Inventory)", "",
           f"Read: {', '.join(live['scopes_read']) or 'nothing'}; {live['bindings']} bindings, {live['resources']}"
           " resources. Ancestry: " + "; ".join(f"projects/{p} < {' < '.join(a) or '(none)'}"
                                               for p, a in sorted(live["ancestry"].items())), ""]
    out += ["### Paths that exist only in the deployed state", ""]
    out += [_table(["principal", "what", "origin", "where"],
                   [[p.get("principal", ""), p.get("how") or p.get("detail", ""), p.get("origin", ""),
                     p.get("address", "")] for p in live["deployed_only_paths"]])] \
        if live["deployed_only_paths"] else ["None: every path of the deployed state is in the plan.", ""]
    out += ["", "### Could not be read (UNKNOWN)", ""]
    out += [_table(["scope", "call", "why", "accepted"],
                   [[u["address"], u["field"], u["why"], u.get("accepted") or "no"] for u in live["unknowns"]])] \
        if live["unknowns"] else ["Nothing: every scope was read.", ""]
    out += ["", "### Drift: plan versus deployed", ""]
    out += [_table(["what", "change", "target", "member", "plan", "deployed", "origin"],
                   [[r["what"], r["change"], r["target"], r.get("member", ""),
                     ", ".join(r["plan"]) if isinstance(r["plan"], list) else r["plan"],
                     ", ".join(r["deployed"]) if isinstance(r["deployed"], list) else r["deployed"], r["origin"]]
                    for r in live["drift"]])] if live["drift"] else ["None.", ""]
    out += ["", "### Secret versions", "",
            "Create time and state from Cloud Asset Inventory; who added (or enabled) each version from Secret"
            " Manager's Admin Activity audit log (AddSecretVersion and EnableSecretVersion are ADMIN_WRITE methods:"
            " always written, kept 400 days). An enabled version of a token added by a principal without"
            " secretmanager.versions.add in the plan or the deployed grants is a path above; one without an entry"
            " is UNKNOWN.", ""]
    versions = live.get("secret_versions") or []
    out += [_table(["version", "state", "created", "added by"],
                   [[v["version"], v["state"], v["created"], v.get("added_by") or "-"] for v in versions])] \
        if versions else ["None shown.", ""]
    return out


def sarif(live: dict, artifact: str) -> tuple[list[dict], list[dict]]:
    """SARIF rules and results for the drift table (warnings: drift alone does not fail the verdict; the paths it
    opens are HFG-READER / HFG-ISOLATION / policy results, and what could not be read HFG-UNKNOWN)."""
    rule = {"id": "HFG-DRIFT", "name": "Deployed state differs from the plan",
            "shortDescription": {"text": "Deployed state differs from the plan"},
            "fullDescription": {"text": "A grant or a resource the stacks own is missing, changed or extra in what"
                                        " Cloud Asset Inventory shows deployed (review --live)."},
            "help": {"text": "bring the change into the stacks (and review it), or revert it with `terraform apply`"},
            "properties": {"security-severity": "5.0"}, "defaultConfiguration": {"level": "warning"}}
    results = []
    for r in live["drift"]:
        detail = (f" {r['member']}: plan {', '.join(r['plan']) or '-'}; deployed {', '.join(r['deployed']) or '-'}"
                  if r["what"] == "grant" else "")
        results.append({"ruleId": "HFG-DRIFT", "level": "warning",
                        "message": {"text": f"{r['change']} {r['what']} {r['target']}{detail}"
                                            + (f" [{r['origin']}]" if r["origin"] else "")},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                       "logicalLocations": [{"fullyQualifiedName": str(r["deployed"] if r["what"] !=
                                                             "grant" and r["deployed"] else r["target"]),
                                                             "kind": "resource"}]}]})
    return [rule], results


def run(env: str, *, plan: Path | None = None, out: Path | None = None, accept: Path | None = None,
        client: Any = None) -> tuple[dict, dict[str, Path]]:
    """`hfgate review --live`: the synthesized stack of `env` (or a `terraform show -json` plan) and what Cloud
    Asset Inventory shows of its projects; writes reports/<env>-live/ (REPORT.md, report.json, report.sarif)."""
    import os

    from review.plan import load, synthesized
    from review.report import load_accepts, write
    from stacks.errors import UsageError
    root = Path(__file__).resolve().parent.parent
    path = plan or synthesized(Path(os.environ.get("CDKTF_OUTDIR") or root / "cdktf.out"), env)
    if not Path(path).exists():
        raise UsageError(f"no synthesized stack at {path}", "run `make synth` first (or pass --plan plan.json)")
    loaded = load(Path(path))
    deployed = read(projects_of(loaded), client)
    report = review(loaded, deployed, load_accepts(accept))
    return report, write(report, out or root / "reports" / f"{env}-live", str(path))

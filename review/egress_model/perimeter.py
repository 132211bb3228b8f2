"""The VPC Service Controls perimeter as the plan leaves it: enforced (`status`) or dry-run only (`spec`), which
services it restricts, and which egress policies open it.

A dry-run configuration denies nothing (violations are only logged: "Dry run mode for service perimeters"), so the
allowlist is enforced only by a perimeter whose *enforced* configuration holds the project and restricts every
service a path to or from the token uses (`TOKEN_PATH_SERVICES`). An egress policy lets identities inside call
resources outside the perimeter ("Ingress and egress rules"): every one is a path out, named by the review.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from review.plan import Plan, unresolved

from stacks.facts import AR_DOCKER_READ, DOCUMENTED_IMAGE_EGRESS, TOKEN_PATH_SERVICES
from stacks.facts import VPCSC_SUPPORTED_PRODUCTS as SUPPORTED_PRODUCTS

PERIMETER = "google_access_context_manager_service_perimeter"
PERIMETERS = "google_access_context_manager_service_perimeters"
EGRESS_POLICY = "google_access_context_manager_service_perimeter_egress_policy"
DRY_RUN_EGRESS_POLICY = "google_access_context_manager_service_perimeter_dry_run_egress_policy"
RESOURCE = "google_access_context_manager_service_perimeter_resource"
INGRESS_POLICY = "google_access_context_manager_service_perimeter_ingress_policy"
# Identity types that admit callers the plan does not name ("Ingress and egress rules", identity_type).
OPEN_IDENTITY_TYPES = ("ANY_IDENTITY", "ANY_USER_ACCOUNT", "ANY_SERVICE_ACCOUNT")


@dataclass
class PerimeterModel:
    present: bool = False
    enforced: bool = False           # an enforced configuration holding resources
    dry_run_only: bool = False
    restricted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    unknowns: list[dict] = field(default_factory=list)
    address: str = ""

    @property
    def egress_enforced(self) -> bool:
        return self.enforced and not self.missing

    def state(self) -> str:
        if not self.present:
            return "no VPC Service Controls perimeter"
        if self.dry_run_only:
            return "dry-run only (violations logged, nothing denied)"
        if not self.enforced:
            return "no enforced configuration"
        if self.missing:
            return f"enforced, but not restricting {', '.join(self.missing)}"
        return "enforced"


def _projects_outside(plan: Plan, resources: list) -> tuple[list[str], list]:
    """(the environment's projects (the host and every team's) the perimeter's resources do not hold, the entries
    that name no project of the plan and cannot be told offline). A resource names a project through a reference to
    a `google_project` data source or resource of the plan, whose project_id is known."""
    from review.plan import team_views
    wanted = {plan.default_project()} | {str(view.output("project_id") or "") for view in team_views(plan).values()}
    wanted = {p for p in wanted if p and not unresolved(p)}
    held, literal = set(), []
    for x in resources:
        text = str(x)
        ref = re.search(r"(data\.)?google_project\.([A-Za-z0-9_-]+)", text)
        if ref:
            managed = None if ref.group(1) else plan.get("google_project", ref.group(2))
            source = plan.data.get(("google_project", ref.group(2))) if ref.group(1) else (
                plan.resolved(managed) if managed else None)
            project = str((source or {}).get("project_id") or "")
            if project and not unresolved(project):
                held.add(project)
                continue
        literal.append(x)
    return sorted(wanted - held), literal


def _block(value):
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], dict) else {}
    return value if isinstance(value, dict) else {}


def read(plan: Plan) -> PerimeterModel:
    m = PerimeterModel()
    for r in plan.of_type(PERIMETER):
        v = plan.resolved(r)
        m.present, m.address = True, r.address
        status, spec = _block(v.get("status")), _block(v.get("spec"))
        if isinstance(r.values.get("status"), str) or unresolved(status.get("restricted_services") or []):
            m.unknowns.append({"address": r.address, "field": "status", "why": "not known offline"})
            continue
        if str(v.get("perimeter_type") or "").upper() == "PERIMETER_TYPE_BRIDGE":
            m.findings.append({"address": r.address, "rule": r.name,
                               "what": "a perimeter bridge: the projects it holds call each other's restricted"
                                       " services across their perimeters, a path out of this one",
                               "example": "a job's call to Cloud Storage in a project of the other perimeter"})
            continue
        raw_status = _block(r.values.get("status"))
        resources = [x for x in raw_status.get("resources") or [] if x]
        resources += [x.values.get("resource") for x in plan.of_type(RESOURCE)
                      if r.name in str(x.values.get("perimeter_name")) or
                      str(x.values.get("perimeter_name")) == str(v.get("name"))]
        # A `terraform show -json` plan leaves the project numbers to its configuration (known after apply).
        resources += [ref for arg, ref in r.config_refs if arg in ("status", "status.resources")]
        missing_projects, literal = _projects_outside(plan, resources)
        if status and resources and missing_projects:
            if literal:
                m.unknowns.append({"address": r.address, "field": "status.resources",
                                   "why": f"cannot tell offline whether {', '.join(map(str, literal))} is"
                                          f" {', '.join(missing_projects)}: name the project through a"
                                          " google_project data source"})
            else:
                m.findings.append({"address": r.address, "rule": r.name,
                                   "what": f"the enforced perimeter does not hold {', '.join(missing_projects)}:"
                                           " its jobs' calls to restricted services are not restricted",
                                   "example": f"a job in {missing_projects[0]} copying to a bucket of another"
                                              " project"})
            continue
        if status and resources:
            m.enforced = True
            m.restricted = sorted(set(status.get("restricted_services") or []))
            for policy in status.get("egress_policies") or []:
                finding = _egress_path(r.address, r.name, policy)
                if finding:
                    m.findings.append(finding)
            for policy in status.get("ingress_policies") or []:
                finding = _ingress_path(r.address, r.name, policy)
                if finding:
                    m.findings.append(finding)
        elif spec:
            m.dry_run_only = True
        if v.get("use_explicit_dry_run_spec") and spec and not status:
            m.dry_run_only = True
    for r in plan.of_type(EGRESS_POLICY):
        finding = _egress_path(r.address, r.name, plan.resolved(r))
        if finding:
            m.findings.append(finding)
    for r in plan.of_type(INGRESS_POLICY):
        finding = _ingress_path(r.address, r.name, plan.resolved(r))
        if finding:
            m.findings.append(finding)
    for r in plan.of_type(PERIMETERS):
        m.unknowns.append({"address": r.address, "field": "service_perimeters",
                           "why": "the authoritative perimeters resource is not read by the egress model"})
    if m.enforced:
        # Each service by name: "RESTRICTED-SERVICES" is a value of vpc_accessible_services.allowed_services (all the
        # services the perimeter restricts), not a wildcard of restricted_services.
        m.missing = [s for s in TOKEN_PATH_SERVICES if s not in m.restricted]
        for s in m.missing:
            m.findings.append({"address": m.address, "rule": "restricted_services",
                               "what": f"the perimeter does not restrict {s} ({TOKEN_PATH_SERVICES[s]};"
                                       f" {SUPPORTED_PRODUCTS}): calls to it cross the perimeter freely",
                               "example": f"a job calling {s} on a project outside the perimeter"})
    return m


def _image_pull_only(to: dict) -> bool:
    """Artifact Registry's DockerRead, and nothing else, on named projects (never `*`): an image pull."""
    ops = [o for o in to.get("operations") or [] if isinstance(o, dict)]
    resources = to.get("resources") or []
    if not ops or not resources or "*" in resources or to.get("external_resources") or to.get("roles"):
        return False
    for op in ops:
        methods = [x.get("method") for x in op.get("method_selectors") or [] if isinstance(x, dict)]
        if op.get("service_name") != "artifactregistry.googleapis.com" or not methods or \
                any(x != AR_DOCKER_READ for x in methods):
            return False
    return True


def _egress_path(address: str, name: str, policy: dict) -> dict | None:
    """The path out an egress policy opens, or None for the image-pull rule Google documents for a Google registry
    project (stacks.facts.DOCUMENTED_IMAGE_EGRESS: DockerRead only, on those projects only)."""
    to = _block(policy.get("egress_to"))
    frm = _block(policy.get("egress_from"))
    resources = to.get("resources") or []
    ops = [o.get("service_name") for o in to.get("operations") or [] if isinstance(o, dict)]
    who = frm.get("identities") or [frm.get("identity_type") or "anyone"]
    scope = "every project" if "*" in resources else ", ".join(map(str, resources)) or "(no resources)"
    if _image_pull_only(to):
        if all(str(x) in DOCUMENTED_IMAGE_EGRESS for x in resources):
            return None
        return {"address": address, "rule": name,
                "what": f"an egress policy lets {', '.join(map(str, who))} pull images ({AR_DOCKER_READ} only) from"
                        f" {scope}, outside the perimeter: jobs run code from there, and the request reaches that"
                        " project; accept it with a reason naming who owns it (e.g. Google's Deep Learning"
                        " Containers, found in a dry-run violation)",
                "example": f"an image pull from {scope}"}
    return {"address": address, "rule": name,
            "what": f"an egress policy lets {', '.join(map(str, who))} call {', '.join(map(str, ops)) or 'any service'}"
                    f" on {scope}, outside the perimeter: a path out",
            "example": f"{ops[0] if ops else 'a service'} call to a resource of {scope}"}


def _ingress_path(address: str, name: str, policy: dict) -> dict | None:
    """An ingress policy that admits every identity of a kind (not the identities it names) is a path in."""
    frm = _block(policy.get("ingress_from"))
    kind = str(frm.get("identity_type") or "")
    if kind not in OPEN_IDENTITY_TYPES:
        return None
    to = _block(policy.get("ingress_to"))
    ops = [o.get("service_name") for o in to.get("operations") or [] if isinstance(o, dict)]
    return {"address": address, "rule": name,
            "what": f"an ingress policy admits {kind} to {', '.join(map(str, ops)) or 'every service'} from outside"
                    " the perimeter: anyone IAM lets in reaches the project's data from anywhere",
            "example": f"{ops[0] if ops else 'a'} call from outside the perimeter"}

"""The project's own security policies over a `Plan`: one function per rule, each with its id, severity, rationale
and fix. A policy returns its violations (resource address + what is wrong); an empty list is a pass.

Plain Python over the same JSON checkov reads, so reviewers can read each rule in a few lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from review import roles as R
from review.graph import Grant, grants  # noqa: F401 - re-exported for the policies' readers
from review.plan import Plan

PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}
PUBLIC = {"allUsers", "allAuthenticatedUsers"}


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    severity: str          # critical | high | medium | low
    rationale: str
    fix: str
    check: Callable[[Plan], list[tuple[str, str]]]


POLICIES: list[Policy] = []


def policy(id: str, title: str, severity: str, rationale: str, fix: str):
    def register(fn):
        POLICIES.append(Policy(id, title, severity, rationale, fix, fn))
        return fn
    return register


def trainer_member(plan: Plan) -> str | None:
    email = plan.output("trainer_email")
    return f"serviceAccount:{email}" if email else None


def egress_mode(plan: Plan) -> str:
    mode = plan.output("egress_mode")
    if mode:
        return mode
    return "proxy" if plan.of_type("google_compute_network_attachment") else "open"


def is_default_sa(member: str) -> bool:
    return member.endswith("-compute@developer.gserviceaccount.com") or member.endswith("@appspot.gserviceaccount.com")


def firewall_rules(plan: Plan, rtype: str, direction: str, default: str = "") -> list[dict]:
    """Resolved firewall rules (VPC firewall or firewall-policy rules) of one direction, with their address."""
    return [plan.resolved(r) | {"_address": r.address} for r in plan.of_type(rtype)
            if str(r.values.get("direction", default)).upper() == direction]


# The rules ---------------------------------------------------------------------------------------------------------
@policy("HFG001", "No project-, folder- or organization-level secret access", "critical",
        "A project-level secretAccessor reads every secret in the project, not just the Hugging Face token.",
        "grant roles/secretmanager.secretAccessor on the secret (TokenSecret.grant_read), never on the project")
def no_broad_secret_access(plan: Plan):
    return [(g.address, f"{g.member} has {g.role} on {g.resource} ({R.ACCESS})") for g in grants(plan)
            if g.perms and R.ACCESS in g.perms and g.role not in PRIMITIVE and g.scope in
            ("project", "folder", "organization")]


@policy("HFG002", "No primitive roles", "high",
        "Owner/Editor/Viewer carry thousands of permissions (Owner reads every secret).",
        "use predefined roles scoped to the resource (see the grant_* methods of each construct)")
def no_primitive_roles(plan: Plan):
    return [(g.address, f"{g.member} has {g.role} on {g.resource}") for g in grants(plan) if g.role in PRIMITIVE]


@policy("HFG003", "No public members", "critical",
        "allUsers / allAuthenticatedUsers make a resource readable by anyone (with a Google account).",
        "grant to named service accounts or groups only")
def no_public_members(plan: Plan):
    return [(g.address, f"{g.member} has {g.role} on {g.resource}") for g in grants(plan) if g.member in PUBLIC]


@policy("HFG004", "No service account keys", "high",
        "A key is a long-lived credential that can leak; jobs get short-lived tokens from the metadata server.",
        "remove google_service_account_key; use the attached service account, or workload identity federation for CI")
def no_sa_keys(plan: Plan):
    return [(r.address, "creates a service account key") for r in plan.of_type("google_service_account_key")]


@policy("HFG005", "No default compute service account", "high",
        "The default compute account usually holds Editor and is shared by everything in the project.",
        "run jobs as the trainer account from the stacks (outputs: trainer_email)")
def no_default_compute_sa(plan: Plan):
    hits = [(g.address, f"grant to {g.member}") for g in grants(plan) if is_default_sa(g.member)]
    for r in plan.resources:
        v = plan.resolved(r)
        for key in ("service_account", "service_account_email", "email"):
            value = v.get(key)
            if isinstance(value, str) and is_default_sa(value):
                hits.append((r.address, f"{key} is {value}"))
            if isinstance(value, dict) and is_default_sa(str(value.get("email", ""))):
                hits.append((r.address, f"{key}.email is {value['email']}"))
    return hits


@policy("HFG006", "The token never enters Terraform state", "critical",
        "secret_data is stored in plain text in the Terraform state (and plan files).",
        "add the token with `hfgate token set` (or write-only secret_data_wo, token_write_only = true)")
def no_plain_secret_data(plan: Plan):
    return [(r.address, "secret version with secret_data") for r in plan.of_type("google_secret_manager_secret_version")
            if r.values.get("secret_data") not in (None, "")]


@policy("HFG007", "Egress default-deny in proxy mode", "high",
        "In proxy mode only the Secure Web Proxy may be reached from the VPC; anything else is denied.",
        "keep the stacks' firewall policy rule denying 0.0.0.0/0 egress at the lowest priority, and no broader allow")
def egress_default_deny(plan: Plan):
    if egress_mode(plan) != "proxy":
        return []
    rules = firewall_rules(plan, "google_compute_network_firewall_policy_rule", "EGRESS")
    fw = firewall_rules(plan, "google_compute_firewall", "EGRESS")
    hits = []
    deny = [r for r in rules if r.get("action") == "deny" and "0.0.0.0/0" in
            (r.get("match") or {}).get("dest_ip_ranges", [])]
    if not deny and not any(r.get("deny") and "0.0.0.0/0" in r.get("destination_ranges", []) for r in fw):
        hits.append(("(network)", "no rule denies egress to 0.0.0.0/0"))
    floor = min((r.get("priority", 65535) for r in deny), default=65535)
    for r in rules:
        if r.get("action") == "allow" and "0.0.0.0/0" in (r.get("match") or {}).get("dest_ip_ranges", []) \
                and r.get("priority", 1000) < floor:
            hits.append((r["_address"], "allows egress to 0.0.0.0/0 before the deny"))
    for r in fw:
        if r.get("allow") and "0.0.0.0/0" in r.get("destination_ranges", []):
            hits.append((r["_address"], "VPC firewall allows egress to 0.0.0.0/0"))
    return hits


@policy("HFG008", "No ingress from 0.0.0.0/0", "high",
        "Training jobs need no inbound connections from the internet.",
        "remove the allow rule, or restrict source_ranges to the load balancer / IAP ranges you need")
def no_open_ingress(plan: Plan):
    hits = []
    for v in firewall_rules(plan, "google_compute_firewall", "INGRESS", default="INGRESS"):
        if v.get("allow") and {"0.0.0.0/0", "::/0"} & set(v.get("source_ranges") or []):
            hits.append((v["_address"], "allows ingress from the internet"))
    for v in firewall_rules(plan, "google_compute_network_firewall_policy_rule", "INGRESS"):
        if v.get("action") == "allow" and "0.0.0.0/0" in (v.get("match") or {}).get("src_ip_ranges", []):
            hits.append((v["_address"], "allows ingress from the internet"))
    return hits


@policy("HFG009", "Buckets not public, with uniform access", "high",
        "Public access prevention blocks accidental public ACLs; uniform access makes IAM the only access path.",
        "set public_access_prevention = \"enforced\" and uniform_bucket_level_access = true (the Bucket construct does)")
def buckets_hardened(plan: Plan):
    hits = []
    for r in plan.of_type("google_storage_bucket"):
        v = r.values
        if v.get("public_access_prevention") != "enforced":
            hits.append((r.address, "public_access_prevention is not enforced"))
        if v.get("uniform_bucket_level_access") is not True:
            hits.append((r.address, "uniform_bucket_level_access is not true"))
    for r in plan.of_type("google_storage_bucket_acl", "google_storage_default_object_acl",
                          "google_storage_object_acl", "google_storage_bucket_access_control",
                          "google_storage_object_access_control", "google_storage_default_object_access_control"):
        hits.append((r.address, "ACLs bypass uniform access"))
    return hits


@policy("HFG010", "Every Vertex job identity is the trainer", "high",
        "Whoever may act as a service account may run jobs as it; only the trainer should be usable for training.",
        "grant roles/iam.serviceAccountUser on the trainer only (ServiceAccount.grant_act_as), never project-wide")
def jobs_run_as_trainer(plan: Plan):
    trainer = trainer_member(plan)
    submitter = f"serviceAccount:{plan.output('submitter_email')}"
    # A team's configured submitters (people, groups, CI) act as its submitter: that is what they are for.
    configured = {m for m in plan.output("submitters") or [] if isinstance(m, str)}
    hits = []
    if trainer is None:
        hits.append(("output.trainer_email", "the outputs contract names no trainer"))
    for g in grants(plan):
        if g.perms and g.perms & R.IMPERSONATE and g.role not in PRIMITIVE:
            if g.resource.startswith(("project:", "folder:", "organization:")):
                hits.append((g.address, f"{g.member} may act as every service account ({g.role} on {g.resource})"))
            elif g.scope == "serviceAccount" and trainer and g.resource != trainer and (
                    (g.member == submitter and R.ACT_AS in g.perms) or
                    (g.resource == submitter and g.member not in configured)):
                # The submitter may run jobs as whatever it can act as (actAs: what Vertex AI checks on a job's
                # account); nobody may become the submitter. Minting another account's token (the publisher's, to
                # read the write token) runs no job as it. Other service accounts (and their own Workload Identity
                # bindings) are not job identities here.
                hits.append((g.address, f"{g.member} may act as {g.resource.split(':', 1)[1]}, not the trainer"))
    return hits


# Who may issue certificates from the proxy's TLS inspection CA pool: a certificate from it for huggingface.co is
# trusted by every job (the bootstrap adds the CA), so an issuer with a network position could read the token.
CA_ISSUING_ROLES = {"roles/privateca.admin", "roles/privateca.caManager", "roles/privateca.certificateManager",
                    "roles/privateca.certificateRequester", "roles/privateca.workloadCertificateRequester",
                    "roles/privateca.templateUser"}   # owner/editor too, but HFG002 already refuses them
CA_HARMLESS_ROLES = {"roles/privateca.auditor", "roles/privateca.poolReader", "roles/viewer"}
INSPECTION_AGENT = "@gcp-sa-networksecurity.iam.gserviceaccount.com"


@policy("HFG011", "Only the proxy issues from the TLS inspection CA", "high",
        "Jobs trust the inspection CA for the Hugging Face hosts; whoever can issue from its pool could impersonate "
        "huggingface.co to a job and read the token it sends.",
        "grant roles/privateca.certificateManager on the inspection pool to the Network Security service agent only")
def inspection_ca_issuers(plan: Plan):
    if not plan.of_type("google_privateca_ca_pool"):
        return []
    hits = []
    for g in grants(plan):
        on_pool = g.kind.startswith("google_privateca_ca_pool")
        if (not on_pool and g.scope not in ("project", "folder", "organization")) or g.role in PRIMITIVE:
            continue
        agent = g.member.startswith("serviceAccount:service-") and g.member.endswith(INSPECTION_AGENT)
        if on_pool and ("member" in g.unknown or "role" in g.unknown):
            hits.append((g.address, f"{', '.join(g.unknown)} not known offline: cannot tell who may issue (UNKNOWN)"))
        elif g.role in CA_ISSUING_ROLES and not (agent and on_pool):
            hits.append((g.address, f"{g.member} may issue certificates ({g.role} on {g.resource})"))
        elif on_pool and g.role not in CA_ISSUING_ROLES | CA_HARMLESS_ROLES:
            hits.append((g.address, f"{g.role} on the inspection pool is not a role this review knows (UNKNOWN)"))
    return hits


AUDITED_SERVICES = ("secretmanager.googleapis.com", "iam.googleapis.com", "allServices")
AUDIT_TYPES = ("google_project_iam_audit_config", "google_folder_iam_audit_config",
               "google_organization_iam_audit_config")
# What each project holding team credentials must log (stacks.project.AUDITED_DATA_ACCESS, with its citations): reads
# of a token secret (AccessSecretVersion: DATA_READ), and minting a service account's tokens (IAM Credentials'
# GenerateAccessToken, SignBlob, SignJwt: Data Access logs, enabled through iam.googleapis.com's audit config; the
# permission is typed ADMIN_READ on "Service Account Credentials audit logging").
AUDIT_NEEDS = (("secretmanager.googleapis.com", "google_secret_manager_secret", "DATA_READ",
                "reads of the token"),
               ("iam.googleapis.com", "google_service_account", "ADMIN_READ",
                "minting its service accounts' tokens (IAM Credentials: hfgate publish, impersonation)"))


def _audit_configs(plan: Plan) -> list[tuple[str, str, object, list, str]]:
    """(address, scope, service, [(log_type, exempted_members)], target) of every audit config in the plan: the
    *_iam_audit_config resources and the auditConfigs of authoritative *_iam_policy documents. `target`: the
    project an audit config of a project is for ("" for folders and organizations, assumed to hold every project)."""
    import json as _json
    out = []
    for r in plan.of_type(*AUDIT_TYPES):
        v = plan.resolved(r)
        logs = v.get("audit_log_config") or []
        logs = [logs] if isinstance(logs, dict) else logs
        scope = r.type.removeprefix("google_").split("_")[0]
        out.append((r.address, scope, v.get("service"),
                    [(x.get("log_type"), x.get("exempted_members") or []) for x in logs if isinstance(x, dict)]
                    if isinstance(logs, list) else logs,
                    str(v.get("project") or plan.default_project()) if scope == "project" else ""))
    for r in plan.resources:
        kind = r.type.removeprefix("google_").split("_iam_")[0]
        if not r.type.endswith("_iam_policy") or kind not in ("project", "folder", "organization"):
            continue
        v = plan.resolved(r)
        raw = v.get("policy_data")
        try:
            data = _json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        for c in (data or {}).get("auditConfigs", []) if isinstance(data, dict) else []:
            out.append((r.address, "policy", c.get("service"),
                        [(x.get("logType"), x.get("exemptedMembers") or []) for x in c.get("auditLogConfigs", [])],
                        str(v.get("project") or plan.default_project()) if kind == "project" else ""))
    return out


def _projects_holding(plan: Plan, rtype: str) -> list[str]:
    return sorted({str(plan.resolved(r).get("project") or plan.default_project()) for r in plan.of_type(rtype)})


@policy("HFG012", "Reads of the token and minting of service account tokens are audit-logged, in every project",
        "high",
        "Data Access logs are off by default: Secret Manager's (DATA_READ) record who read a token, IAM's "
        "(iam.googleapis.com) who minted a service account's tokens, e.g. the publisher's. Every project that "
        "holds a token secret or a service account needs both, with no exemption; each config is authoritative "
        "for its service in its project, so there is one per (project, service).",
        "keep each project's google_project_iam_audit_config for secretmanager.googleapis.com (DATA_READ) and "
        "iam.googleapis.com (ADMIN_READ, DATA_READ), declared once per project (stacks.project), with no "
        "exempted_members; remove exemptions and other audit configs for those services or allServices")
def token_reads_audited(plan: Plan):
    from review.plan import unresolved as _unresolved
    hits = []
    configs = _audit_configs(plan)
    logged: dict[tuple[str, str], set] = {}     # (project or "" for everywhere, service) -> log types
    for address, scope, service, logs, target in configs:
        if _unresolved(service) or _unresolved(logs) or _unresolved(target):
            hits.append((address, "service, project or log configs not known offline: cannot tell whether token"
                                  " reads are logged (UNKNOWN)"))
            continue
        if service not in AUDITED_SERVICES:
            continue
        for log_type, exempted in logs:
            if exempted:
                hits.append((address, f"exempts {', '.join(map(str, exempted))} from {service} {log_type} audit"
                                      " logs: their reads of the token would not be logged"))
        types = {t for t, _ in logs}
        if service == "secretmanager.googleapis.com" and "DATA_READ" not in types:
            # allServices configs are unioned with a service's own, not instead of it
            hits.append((address, f"sets {service} audit logs without DATA_READ: reads of the token are not"
                                  " logged"))
        logged.setdefault((target, str(service)), set()).update(types)
    for service, rtype, log_type, what in AUDIT_NEEDS:
        for project in _projects_holding(plan, rtype):
            have = set().union(*(logged.get((p, s), set()) for p in (project, "") for s in (service, "allServices")))
            if log_type not in have:
                hits.append((f"(project {project})", f"no audit config enables {log_type} for {service} in"
                                                     f" project {project}: Data Access logs are off by default, so"
                                                     f" {what} are not logged"))
    per = [(target, s) for _a, sc, s, _l, target in configs if sc == "project" and s in AUDITED_SERVICES]
    for key in sorted(set(per), key=str):
        if per.count(key) > 1:
            hits.append((f"(project {key[0]})", f"{per.count(key)} audit configs for {key[1]} in project {key[0]}:"
                                                " each is authoritative for the service, so the last applied"
                                                " wins"))
    return hits


@policy("HFG013", "The training image comes from a trusted registry or is pinned by digest", "high",
        "The image runs with the token: whoever can push a mutable tag (in any registry) controls that code.",
        "use an image from trusted_image_registries (config/<env>.toml: Google's Deep Learning Containers and the "
        "project's Artifact Registry by default), or pin it: image@sha256:<digest>")
def image_trusted(plan: Plan):
    from review.plan import unresolved as _unresolved
    from stacks.facts import image_problem
    image = plan.output("training_image")
    trusted = plan.output("trusted_image_registries")
    if not image or _unresolved(image) or _unresolved(trusted):
        return [("output.training_image", "the training image (or the trusted registries) is not known offline"
                                          " (UNKNOWN)")]
    why = image_problem(str(image), tuple(trusted or ()))
    return [("output.training_image", why)] if why else []

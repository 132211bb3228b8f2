"""Who can reach the token: a permission graph over every IAM grant in a plan, failing closed.

A principal reaches the token if any permission path does:
- `secretmanager.versions.access` on the secret or anything above it (project, folder, organization);
- an IAM change on the secret or anything above it (`setIamPolicy`, or editing custom roles): it can grant itself;
- impersonation of a principal that reaches it (act-as, access-token minting, signing, key creation, workload
  identity, or granting itself one of those on the account), followed transitively;
- writing what a token-holding job runs or trusts (objects in the staging bucket, images in the training
  repository), or reading the spec of a `--token-delivery env` job (which holds HF_TOKEN).
Separately, who can replace the token (add, enable, disable or destroy versions).

Roles are judged by the permissions they hold: predefined roles from `review.roles`, custom roles from their own
permission lists. A grant that might matter but cannot be resolved offline (a role, member or target written as an
expression, a variable, a data source, a module output, a value known only after apply, a role not in the table,
a module whose resources the plan does not hold) is an UNKNOWN, never a guess.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from review import roles as R
from review.plan import REF, Plan, unresolved

IAM_SUFFIXES = ("_iam_member", "_iam_binding", "_iam_policy")
HIERARCHY = ("project", "folder", "organization")
# What each kind of target can lead to; grants on any other kind of resource cannot reach the token.
RELEVANT_ON = {"secret": {R.ACCESS, R.SECRET_SET_IAM, *R.VERSION_TAMPER}, "serviceAccount": set(R.IMPERSONATE),
               "bucket": set(R.OBJECT_WRITE), "artifactRegistry": set(R.IMAGE_WRITE),
               **{h: set(R.RELEVANT) for h in HIERARCHY}}


@dataclass(frozen=True)
class Grant:
    member: str
    role: str
    resource: str          # "<kind>:<id>": project, folder, organization, secret, serviceAccount, bucket, ...
    kind: str              # the Terraform type it came from
    address: str
    perms: frozenset | None = None     # the role's permissions; None when the role cannot be resolved
    unknown: tuple[str, ...] = ()      # fields that could not be resolved offline

    @property
    def scope(self) -> str:
        return self.resource.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.resource.split(":", 1)[1] if ":" in self.resource else ""


def _last(value) -> str:
    return str(value or "").rstrip("/").rsplit("/", 1)[-1]


def _target(plan: Plan, scope: str, v: dict, raw: dict | None = None) -> tuple[str, str, str]:
    """(kind, id, the field it came from) of an IAM resource's target (v resolved, raw as written)."""
    if scope == "project":      # `projects/ID` and a number standing as "(number of ID)" name project ID
        project = str(v.get("project") or plan.default_project()).removeprefix("projects/")
        number = re.fullmatch(r"\(number of ([^)]+)\)", project)
        return "project", number.group(1) if number else project, "project"
    if scope == "folder":
        return "folder", str(v.get("folder")), "folder"
    if scope == "organization":
        return "organization", str(v.get("org_id")), "org_id"
    if scope == "secret_manager_secret":
        return "secret", _last(v.get("secret_id")), "secret_id"
    if scope == "service_account":
        return "serviceAccount", account_email(plan, (raw or v).get("service_account_id")), "service_account_id"
    if scope.startswith("storage_") and "bucket" in v:
        # The bucket's IAM, and the IAM of what is inside it (managed folders: a grant there is a grant on the
        # objects under the folder's prefix, which jobs read like any other object of the bucket).
        return "bucket", _bucket(plan, v, raw), "bucket"
    if scope == "artifact_registry_repository":
        return "artifactRegistry", _last(v.get("repository")), "repository"
    key = next((k for k in ("name", "topic", "crypto_key_id", "subnetwork", "instance", "ca_pool") if k in v), "name")
    return scope, str(v.get(key, "")), key


def _deep(plan: Plan, raw, depth: int = 3):
    """A value resolved through arguments that are themselves references (`${google_storage_managed_folder.f.bucket}`
    where the folder's `bucket` is `${google_storage_bucket.b.name}`)."""
    value = plan.resolve(raw)
    m = REF.fullmatch(str(raw or ""))
    if depth and unresolved(value) and m and not m.group(1):
        r = plan.get(m.group(2), m.group(3))
        if r is not None and m.group(4) in r.values:
            return _deep(plan, r.values[m.group(4)], depth - 1)
    return value


def _bucket(plan: Plan, v: dict, raw: dict | None) -> str:
    bucket = _deep(plan, (raw or v).get("bucket"))
    return "(unknown: bucket)" if bucket in (None, "") else str(bucket).removeprefix("b/")


def account_email(plan: Plan, value) -> str:
    """The email of the service account an argument names by any identifier: its email, its resource name
    (`projects/P/serviceAccounts/EMAIL` or `.../UNIQUE_ID`), its numeric unique id, or a reference to an account or
    to a `google_service_account` data source (found by short id, email, name or unique id). What cannot be told
    offline stays unresolved (an UNKNOWN wherever it matters)."""
    raw = str(value or "")
    for m in REF.finditer(raw):
        if m.group(2) != "google_service_account":
            continue
        if m.group(1):
            email = data_account_email(plan, m.group(3))
            return email or f"(unknown: the account data.google_service_account.{m.group(3)} reads)"
        if plan.get("google_service_account", m.group(3)) is not None:
            return plan.attribute("google_service_account", m.group(3), "email")
    last = _last(plan.resolve(raw))
    if last.isdigit():
        return unique_ids(plan).get(last, f"(unknown: the account whose unique id is {last})")
    return last


def unique_ids(plan: Plan) -> dict[str, str]:
    """unique id -> email of the accounts of the plan whose unique id it shows (a `terraform show -json` plan of
    accounts that exist already)."""
    out = {}
    for r in plan.of_type("google_service_account"):
        uid = str(r.values.get("unique_id") or "")
        if uid.isdigit():
            out[uid] = plan.attribute("google_service_account", r.name, "email")
    return out


def data_member(plan: Plan, member):
    """A member written with an account data source's attributes (`serviceAccount:${data.google_service_account.x
    .email}`, `${data....member}`) as the account it reads, where that can be told offline."""
    if not isinstance(member, str) or "data.google_service_account." not in member:
        return member

    def sub(m):
        email = data_account_email(plan, m.group(3)) if m.group(1) and m.group(2) == "google_service_account" else None
        if email is None:
            return m.group(0)
        return {"email": email, "member": f"serviceAccount:{email}"}.get(m.group(4), m.group(0))
    return REF.sub(sub, member)


def data_account_email(plan: Plan, name: str) -> str | None:
    """The email of the account a `data.google_service_account` reads, or None when it cannot be told offline.
    `account_id` takes a short id (in `project`, else the provider's), an email, or a resource name ending in an
    email or a unique id (the provider's data source reference)."""
    v = plan.data.get(("google_service_account", name))
    if v is None:
        return None
    v = plan.resolve(v)
    account = v.get("account_id")
    if unresolved(account) or not account:
        return None
    last = _last(account)
    if "@" in last:
        return last
    if last.isdigit():
        return unique_ids(plan).get(last)
    project = v.get("project") or plan.default_project()
    return None if unresolved(project) or not project else f"{last}@{project}.iam.gserviceaccount.com"


def role_permissions(plan: Plan, role) -> frozenset | None:
    if not isinstance(role, str) or unresolved(role):
        return None
    if role in R.PREDEFINED:
        return R.PREDEFINED[role]
    m = re.fullmatch(r"(projects|organizations)/([^/]+)/roles/([^/]+)", role)
    if not m:
        return None
    rtype = "google_project_iam_custom_role" if m.group(1) == "projects" else "google_organization_iam_custom_role"
    for r in plan.of_type(rtype):
        v = plan.resolved(r)
        owner = v.get("project") or plan.default_project() if m.group(1) == "projects" else v.get("org_id")
        if v.get("role_id") == m.group(3) and str(owner) == m.group(2):
            perms = v.get("permissions")
            return None if unresolved(perms) else frozenset(perms or [])
    return None


def _pairs(r, v) -> tuple[list[tuple[object, object]], str | None]:
    """(role, member) pairs of one IAM resource, or the field that hides them."""
    if r.type.endswith("_iam_member"):
        return [(v.get("role"), v.get("member"))], None
    if r.type.endswith("_iam_binding"):
        members = v.get("members")
        if members is None or isinstance(members, str):
            return [(v.get("role"), members)], None
        return [(v.get("role"), m) for m in members], None
    raw = v.get("policy_data")
    if unresolved(raw):
        return [], "policy_data"
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return [(b.get("role"), m) for b in data.get("bindings", []) for m in b.get("members", [])], None
    except (TypeError, ValueError, AttributeError):
        return [], "policy_data"


def iam(plan: Plan) -> tuple[list[Grant], list[dict]]:
    """Every grant (members resolved, bindings and policies expanded, roles mapped to permissions) and the IAM
    resources whose grants cannot be listed at all."""
    grants, hidden = [], []
    for r in plan.resources:
        if not r.type.endswith(IAM_SUFFIXES):
            continue
        v = plan.resolved(r)
        scope = r.type.removeprefix("google_").rsplit("_iam_", 1)[0]
        kind, target, field = _target(plan, scope, v, r.values)
        pairs, hides = _pairs(r, v)
        if hides:
            hidden.append({"address": r.address, "field": hides, "value": _short(r.values.get(hides)),
                           "kind": kind, "target": target})
        for role, member in pairs:
            member = data_member(plan, member)
            perms = role_permissions(plan, role)
            unknown = tuple(f for f, bad in (("role", perms is None), ("member", unresolved(member)),
                                              (field, unresolved(target))) if bad)
            grants.append(Grant(str(member), str(role), f"{kind}:{target}", r.type, r.address, perms, unknown))
    return grants, hidden


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text or "") <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class Targets:
    project: str
    secret_id: str
    staging_bucket: str
    mirror_bucket: str
    artifacts_bucket: str
    image_repository: str       # Artifact Registry repository id of the training image, "" when not in this project
    write_secret_id: str = ""   # the write token's secret (publishing), "" in a plan without one

    @classmethod
    def of(cls, plan: Plan) -> "Targets":
        token = plan.output("token_secret") or ""
        secrets = [plan.resolved(r).get("secret_id") for r in plan.of_type("google_secret_manager_secret")]
        if not token and len(secrets) == 1:
            token = f"projects/{plan.default_project()}/secrets/{secrets[0]}"
        m = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", str(token))
        project = m.group(1) if m else (plan.output("project_id") or plan.default_project())
        image = str(plan.output("training_image") or "")
        repo = ""
        im = re.match(r"[a-z0-9-]+-docker\.pkg\.dev/([^/]+)/([^/]+)/", image)
        if im and im.group(1) == project:
            repo = im.group(2)
        w = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", str(plan.output("write_token_secret") or ""))
        return cls(project=str(project), secret_id=m.group(2) if m else str(token),
                   write_secret_id=w.group(2) if w else str(plan.output("write_token_secret") or ""),
                   staging_bucket=str(plan.output("staging_bucket") or "").removeprefix("gs://"),
                   mirror_bucket=str(plan.output("mirror_bucket") or "").removeprefix("gs://"),
                   artifacts_bucket=str(plan.output("artifacts_bucket") or "").removeprefix("gs://"),
                   image_repository=repo)


def _above(g: Grant, t: Targets) -> bool:
    """The grant is on the token's project or on a folder or organization (which may hold it: assumed so)."""
    return (g.scope == "project" and g.target == t.project) or g.scope in ("folder", "organization")


def _on_secret(g: Grant, t: Targets) -> bool:
    return (g.scope == "secret" and g.target == t.secret_id) or _above(g, t)


def write_token_access(plan: Plan) -> dict:
    """Who reaches the write token (publishing): reads it, can grant itself access, or can act as an identity that
    reaches it (transitively); and resources of any type that run as the publisher or use the write secret
    (review.references). Job inputs and job specs lead to the read token only: they are not paths here."""
    import dataclasses
    t = Targets.of(plan)
    if not t.write_secret_id:
        return {"readers": [], "writers": [], "unknowns": [], "secret": ""}
    return token_access(plan, _targets=dataclasses.replace(t, secret_id=t.write_secret_id), _which="write")


# Issuers of a multi-tenant service: anyone with an account there (any repository, project or organization) gets a
# token from them, so a provider trusting one admits that whole service unless its attribute condition narrows it
# to your organization. (issuer, who it admits, source)
PUBLIC_ISSUERS: tuple[tuple[str, str, str], ...] = (
    ("https://token.actions.githubusercontent.com", "any GitHub Actions workflow of any repository",
     "cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines (GitHub Actions: one issuer"
     " for every repository; configure a pool per GitHub organization, with an attribute condition)"),
    ("https://gitlab.com", "any GitLab.com CI/CD job of any project",
     "cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines (GitLab SaaS: one issuer for"
     " every group; configure it per GitLab group, with an attribute condition)"),
    ("https://app.terraform.io", "any Terraform Cloud workspace of any organization",
     "cloud.google.com/iam/docs/workload-identity-federation-with-deployment-pipelines (Terraform Cloud: one issuer"
     " for every organization; configure it per organization, with an attribute condition)"),
)
# principal:// and principalSet:// members of a Workload Identity pool or a workforce pool: (kind, pool id, rest).
POOL_MEMBER = re.compile(r"(principalSet|principal)://iam\.googleapis\.com/(?:projects/([^/]+)/)?locations/global/"
                         r"(workloadIdentityPools|workforcePools)/([^/]+)/(.*)")
# Per kind of pool: (pool type, its id argument, provider type, the provider's pool argument).
POOL_TYPES = {"workloadIdentityPools": ("google_iam_workload_identity_pool", "workload_identity_pool_id",
                                        "google_iam_workload_identity_pool_provider", "workload_identity_pool_id"),
              "workforcePools": ("google_iam_workforce_pool", "workforce_pool_id", "google_iam_workforce_pool_provider",
                                 "workforce_pool_id")}


def _first(value):
    while isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else {}


def _issuer(v: dict) -> str:
    """Who issues the credentials a provider accepts; unresolved when the plan does not say."""
    for key, what in (("oidc", "issuer_uri"), ("aws", "account_id"), ("saml", None), ("x509", None)):
        block = v.get(key)
        if block is None or block == []:
            continue
        if isinstance(block, str):           # the block is an expression, known after apply
            return block if unresolved(block) else f"(unknown: {key} {block})"
        value = _first(block).get(what) if what else key
        if value is None or unresolved(value):
            return str(value) if value is not None else f"(unknown: {key}.{what})"
        return {"oidc": str(value).rstrip("/"), "aws": f"AWS account {value}", "saml": "a SAML identity provider",
                "x509": "an X.509 trust store"}[key]
    return "(unknown: the provider's issuer)"


def _same_project(plan: Plan, v: dict, number: str | None) -> bool:
    """Whether a pool or provider may be in the project a member names by number: only a project whose number the
    plan states (the contract's project_number) can be told apart; any other may be it."""
    known = plan.output("project_number")
    project = v.get("project") or plan.default_project()
    if not number or not known or unresolved(known) or not str(known).isdigit():
        return True
    return project != plan.output("project_id") or str(known) == number


def pool_paths(plan: Plan, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """A pool principal that reaches the token is whoever the pool's providers admit: judged by the providers in the
    plan (issuer, attribute_condition, attribute_mapping). A provider admitting the principal from a multi-tenant
    issuer without an attribute condition is a path (its resource is the reader); a provider whose settings are not
    known offline, or a pool not in the plan at all, is UNKNOWN (a provider added to the pool outside the plan would
    widen it unseen). The pool of a member the configuration lists (submitters, publishers) is accepted as the
    configuration's, and still shown. Returns (reader rows, unknowns)."""
    configured = {m: key for key in ("submitters", "publishers") for m in plan.output(key) or []
                  if isinstance(m, str)}
    public = {i: who for i, who, _src in PUBLIC_ISSUERS}
    out, unknowns, seen = [], [], set()
    for row in rows:
        m = POOL_MEMBER.fullmatch(row["principal"])
        if not m or (row["principal"], row["address"]) in seen:
            continue
        seen.add((row["principal"], row["address"]))
        form, number, pools, pool, rest = m.groups()
        pool_type, pool_arg, provider_type, provider_arg = POOL_TYPES[pools]
        # What the member needs from a provider's mapping to be produced by it.
        need = ("google.subject" if form == "principal" or rest.startswith("subject/") else
                "google.groups" if rest.startswith("group/") else
                rest.split("/", 1)[0] if rest.startswith("attribute.") else None)
        in_plan = [r for r in plan.of_type(pool_type) if plan.resolved(r).get(pool_arg) == pool
                   and _same_project(plan, plan.resolved(r), number)]
        providers = []
        for p in plan.of_type(provider_type):
            v = plan.resolved(p)
            if not _same_project(plan, v, number):
                continue
            if unresolved(v.get(provider_arg)):
                unknowns.append({"address": p.address, "field": provider_arg, "value": str(v.get(provider_arg)),
                                 "why": f"a Workload Identity provider whose pool is not known offline: it may widen"
                                        f" {row['principal']}, which reaches the token"})
            elif v.get(provider_arg) == pool:
                providers.append((p, v))
        if not in_plan and not providers:
            who = configured.get(row["principal"])
            unknowns.append({"address": row["address"], "field": "member", "value": row["principal"],
                             "why": f"{row['principal']} reaches the token ({row['kind']}), but its pool {pool} is not"
                                    " in the plan: who its providers admit (issuer, attribute condition, mapping)"
                                    " cannot be judged, and a provider added to it widens it unseen",
                             **({"accepted": f"listed in the environment's `{who}`: the pool is trusted by"
                                             " configuration (review its providers where it is managed)"}
                                if who else {})})
            continue
        admits = [f"{p.address} ({_issuer(v)}, attribute_condition: {v.get('attribute_condition') or 'none'}"
                  f"{', disabled' if v.get('disabled') is True else ''})" for p, v in providers]
        row["how"] += f"; its pool {pool} admits through: {'; '.join(admits) if admits else 'no provider in the plan'}"
        for p, v in providers:
            if v.get("disabled") is True:
                continue
            mapping, condition, issuer = v.get("attribute_mapping"), v.get("attribute_condition"), _issuer(v)
            hidden = [f for f, x in (("attribute_mapping", mapping), ("attribute_condition", condition),
                                     ("issuer", issuer)) if x is not None and unresolved(x)]
            if hidden:
                unknowns.append({"address": p.address, "field": ", ".join(hidden), "value": issuer,
                                 "why": f"a provider of pool {pool}, whose {row['principal']} reaches the token: its"
                                        f" {', '.join(hidden)} is not known offline, so who it admits cannot be"
                                        " judged"})
                continue
            keys = set(mapping) if isinstance(mapping, dict) and mapping else {"google.subject"}
            if need is not None and need not in keys:
                continue          # the provider maps nothing the member selects on: it admits nobody into it
            if issuer in public and str(condition or "").strip() in ("", "true"):
                out.append({"principal": f"resource:{p.address}", "kind": "federates",
                            "how": f"admits {public[issuer]} ({issuer}, no attribute_condition) as"
                                   f" {row['principal']}, which reaches the token ({row['kind']} through"
                                   f" {row['address']})",
                            "via": row["principal"], "address": p.address, "role": "(attribute_condition)",
                            "impact": "high"})
    unique = {(u["address"], u["field"]): u for u in unknowns}
    return out, list(unique.values())


def _row(g: Grant, kind: str, how: str, via: str | None = None, impact: str = "high") -> dict:
    return {"principal": g.member, "kind": kind, "how": how, "via": via, "address": g.address, "role": g.role,
            "impact": impact}


def _perm_text(g: Grant, wanted) -> str:
    held = sorted(set(g.perms or ()) & set(wanted))
    return f"{g.role} on {g.resource}" + (f" ({', '.join(held)})" if held else "")


def token_access(plan: Plan, *, _targets: Targets | None = None, _which: str = "read",
                 env_jobs: bool = True) -> dict:
    """readers: every (principal, path) that reaches the token; writers: who can replace it; unknowns: what could
    not be resolved and might matter."""
    t = _targets or Targets.of(plan)
    job_token = _which == "read"      # job inputs, images and job specs lead to the token jobs read
    grants, hidden = iam(plan)
    unknowns = []
    if unresolved(t.secret_id) or not t.secret_id:
        unknowns.append({"address": "output.token_secret", "field": "token_secret", "value": _short(t.secret_id),
                         "why": "the token secret's name is not known offline: no grant on a secret can be judged"})
    for h in hidden:
        if h["kind"] in RELEVANT_ON:
            unknowns.append({"address": h["address"], "field": h["field"], "value": h["value"],
                             "why": f"the policy on {h['kind']} {h['target']} comes from a value not known offline"
                                    " (a data source, variable or value known only after apply): its members"
                                    " cannot be listed"})
    for name, call in plan.modules.items():
        unknowns.append({"address": f"module.{name}", "field": "source", "value": _short(call.get("source", "")),
                         "why": "a module call: its resources (and grants) are not in the synthesized stack; review"
                                " the `terraform show -json` plan, which holds them"})
    known = []
    for g in grants:
        relevant = RELEVANT_ON.get(g.scope)
        if relevant is None or (g.perms is not None and not g.perms & relevant):
            continue          # a resource that cannot lead to the token, or a role with nothing that matters there
        if g.unknown:
            unknowns.append({"address": g.address, "field": ", ".join(g.unknown),
                             "value": _short({"role": g.role, "member": g.member, "on": g.resource}),
                             "why": "role not in the permission table and not a custom role of this plan"
                             if g.unknown == ("role",) and not unresolved(g.role) else
                             "not known offline (an expression, variable, data source or value known after apply)"})
            continue
        known.append(g)

    readers, writers = [], []
    for g in known:
        p = g.perms
        if R.ACCESS in p and _on_secret(g, t):
            readers.append(_row(g, "reads", f"{_perm_text(g, {R.ACCESS})}"))
        if (R.SECRET_SET_IAM in p and _on_secret(g, t)) or (p & R.HIERARCHY_SET_IAM and _above(g, t)) \
                or (R.ROLE_UPDATE in p and _above(g, t)):
            readers.append(_row(g, "changes-iam", f"{_perm_text(g, {R.SECRET_SET_IAM, R.ROLE_UPDATE, *R.HIERARCHY_SET_IAM})}:"
                                                  " can grant itself access"))
        # Every bucket a token-holding job reads from: staging (its code), mirror (its weights), artifacts
        # (the checkpoints it resumes from: the trainer's own writes, a separate kind).
        for bucket, what, kind in ((t.staging_bucket, "the staging bucket jobs read (their code)",
                                    "writes-job-inputs"),
                                   (t.mirror_bucket, "the mirror bucket jobs train from", "writes-job-inputs"),
                                   (t.artifacts_bucket, "the artifacts bucket jobs resume checkpoints from",
                                    "writes-checkpoints")):
            if job_token and bucket and p & R.OBJECT_WRITE and ((g.scope == "bucket" and g.target == bucket) or _above(g, t)):
                readers.append(_row(g, kind, f"{_perm_text(g, R.OBJECT_WRITE)}: writes {what}"))
        if job_token and p & R.IMAGE_WRITE and t.image_repository and ((g.scope == "artifactRegistry" and
                                                          g.target == t.image_repository) or _above(g, t)):
            readers.append(_row(g, "writes-job-inputs", f"{_perm_text(g, R.IMAGE_WRITE)}: pushes the training image"))
        if job_token and env_jobs and R.JOB_READ in p and _above(g, t):
            readers.append(_row(g, "reads-env-jobs", f"{_perm_text(g, {R.JOB_READ})}: reads HF_TOKEN in the spec of"
                                                     " --token-delivery env jobs", impact="medium"))
        if p & R.VERSION_TAMPER and _on_secret(g, t):
            writers.append(_row(g, "replaces-token", f"{_perm_text(g, R.VERSION_TAMPER)}: can swap, revive or"
                                                     " destroy token versions", impact="low"))
    # Impersonation, followed to a fixpoint: whoever can become a principal that reaches the token reaches it too.
    while True:
        holders = {r["principal"] for r in readers}
        added = False
        for g in known:
            if not g.perms & R.IMPERSONATE:
                continue
            victims = [h for h in sorted(holders) if h.startswith("serviceAccount:") and
                       ((g.scope == "serviceAccount" and h == f"serviceAccount:{g.target}") or _above(g, t))]
            for victim in victims:
                if victim == g.member or any(r["principal"] == g.member and r["via"] == victim for r in readers):
                    continue
                readers.append(_row(g, "impersonates", f"{_perm_text(g, R.IMPERSONATE)}: can act as"
                                                       f" {victim.split(':', 1)[1]}, which reaches the token",
                                    via=victim))
                added = True
        if not added:
            break
    # Pool principals: whoever the pool's providers admit.
    federated, pool_unknowns = pool_paths(plan, readers + writers)
    readers += federated
    unknowns += pool_unknowns
    # Default deny over resource types: whatever runs as, speaks for or reads the token (review.references).
    from review.references import scan
    from review.references import LEADS_TO
    refs = scan(plan)
    for x in refs["paths"]:
        if LEADS_TO.get(x["protected"], "read") != _which:
            continue
        readers.append({"principal": f"resource:{x['address']}", "kind": x["kind"], "how": x["how"],
                        "via": x["protected"], "address": x["address"], "role": f"({x['field']})",
                        "impact": "high"})
    if job_token:      # the read token's report lists every unknown once; the write token's adds its own only
        unknowns += [{k: u[k] for k in ("address", "field", "value", "why")} for u in refs["unknowns"]]
    else:
        unknowns = [u for u in unknowns if u["address"] != "output.token_secret"]
    key = lambda r: (r["principal"], r["kind"], r["how"], r["address"])  # noqa: E731
    return {"readers": sorted(readers, key=key), "writers": sorted(writers, key=key),
            "unknowns": sorted(unknowns, key=lambda u: (u["address"], u["field"])), "targets": t.__dict__,
            "references": refs}


def grants(plan: Plan) -> list[Grant]:
    return iam(plan)[0]

"""Default deny over resource types: anything in a plan that names a protected identity or the token secret.

Grants are the IAM graph's business (review.graph). This module covers everything else: a resource of *any* type,
known to the review or not, data sources, ephemeral resources, locals and outputs. An argument whose value is, or
references, a protected thing is a path to the token unless its (type, argument) is a row of INERT, each row with
the reason the reference confers nothing. Protected things:

- the trainer and the submitter: their email, member string, resource name or id (literal or `${...}` reference,
  to the account resource or to any data source, local or module that stands for it). A resource that *runs as*
  one of them (a VM, a function, a build trigger, a scheduler job sending its OAuth token to a URL...) hands its
  access token, and so the Hugging Face token, to whoever controls the resource;
- the token secret and its versions: any reference beyond the stacks' own. A data source that reads a version puts
  the value in Terraform state (and in every output built from it), readable by whoever reads the state bucket.

Known run-as types (RUNS_AS) are reported as paths naming what controls them, as far as the plan says; any other
type, or an argument of a known type that is not its run-as argument, is UNKNOWN: it fails the review until a row
is added (with its reason) or the reviewer accepts it. An account is recognized by any identifier: its email, member
or resource name, its numeric `unique_id` where the plan shows it (a `terraform show -json` plan of an account that
exists; otherwise only references to it are seen: README, "What it cannot see"), and the account data sources that
find it (by short id and project, email, name or unique id, or a filter that may list it); an account data source
whose account cannot be told offline is UNKNOWN wherever it is used beyond an inert row.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import re
from dataclasses import dataclass

from review.graph import data_account_email
from review.plan import Plan, Resource, unresolved

# (type glob, argument glob, protected kind, why the reference confers nothing). `type` is the Terraform type,
# "data.<type>" for a data source, "output" for an output, "local" for a local value; the argument is the dotted
# path of the value (list indices dropped). Add a row only with its reason.
INERT: tuple[tuple[str, str, str, str], ...] = (
    ("google_*_iam_member", "member", "identity",
     "a grant *to* the identity on some resource: the IAM graph judges every path it opens to the token"),
    ("google_*_iam_binding", "members", "identity",
     "a grant *to* the identity on some resource: the IAM graph judges every path it opens to the token"),
    ("google_*_iam_policy", "policy_data", "identity",
     "an authoritative policy naming the identity: the IAM graph expands and judges each binding"),
    ("google_service_account_iam_*", "service_account_id", "identity",
     "a grant *on* the identity (who may act as it): the IAM graph follows impersonation transitively"),
    ("google_secret_manager_secret_iam_*", "*", "secret",
     "a grant on the token secret: the IAM graph lists every reader and writer it makes"),
    ("google_*_iam_audit_config", "audit_log_config.exempted_members", "identity",
     "an audit-log exemption: policy HFG012 fails any exemption for Secret Manager"),
    ("data.google_iam_policy", "binding.members", "identity",
     "a policy document: it takes effect only through an *_iam_policy resource, which the IAM graph reads"),
    ("data.google_iam_policy", "audit_config.audit_log_configs.exempted_members", "identity",
     "an audit-log exemption in a policy document: policy HFG012 fails it where it is applied"),
    ("data.google_service_account", "account_id", "identity",
     "reads the account's public metadata (email, unique id, name): no credential"),
    ("data.google_secret_manager_secret", "*", "secret",
     "reads the secret's metadata (labels, replication, rotation): never a version's payload"),
    ("google_secret_manager_secret_version", "secret", "secret",
     "the stacks' write-only version (secret_data_wo never enters plan or state); a plain secret_data fails HFG006"),
    ("output", "*", "*",
     "an output of a name (email, secret id): not a credential; an output built from a data source that reads the"
     " token is reported through that data source"),
    ("local", "*", "*",
     "a local value is only a name for its value: where it is used is judged like the value itself"),
    ("google_access_context_manager_service_perimeter*", "*.ingress_from.identities", "identity",
     "lets the identity's calls through the VPC Service Controls perimeter: it grants no permission, IAM still"
     " decides what the calls may do"),
    ("*", "labels.*", "*", "label values are metadata"),
    ("*", "annotations.*", "*", "annotation values are metadata"),
    ("*", "description", "*", "free text"),
    ("*", "display_name", "*", "free text"),
    ("*", "depends_on", "*", "ordering only"),
    ("google_iam_deny_policy", "rules.*", "*",
     "an IAM deny policy only takes permissions away (deny is evaluated before allow): whoever or whatever it names"
     " gains nothing from it"),
    ("google_*_iam_member_remove", "member", "identity",
     "removes a grant of a role from the identity: it confers nothing (the IAM graph still counts every grant the"
     " plan makes)"),
    ("google_logging_*_sink", "*filter", "*",
     "a log sink's filters select the entries it routes: entries name the secret or the identity (metadata), never"
     " carry the token's value"),
    ("google_logging_*_exclusion", "filter", "*",
     "an exclusion's filter selects entries not to store: entries name the secret or the identity (metadata), never"
     " carry the token's value"),
    ("google_logging_metric", "filter", "*",
     "a log-based metric counts the entries its filter selects: they name the secret or the identity (metadata),"
     " never carry the token's value"),
    ("google_monitoring_alert_policy", "conditions.condition_matched_log.filter", "*",
     "a log-match alert fires on the entries its filter selects: they name the secret or the identity (metadata),"
     " never carry the token's value"),
)

# Types known to run code as (or mint tokens for) the identity in the given arguments. The description says what
# controls the code or where the token goes; CONTROL lists the arguments that show it, when the plan sets them.
# Source: the google provider's reference of each resource (registry.terraform.io/providers/hashicorp/google).
RUNS_AS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "google_compute_instance": (("service_account.email",), "runs as it: its metadata server hands the identity's"
                                " access token to any code on the VM", ("metadata", "metadata_startup_script",
                                                                        "boot_disk.initialize_params.image")),
    "google_compute_instance_template": (("service_account.email",), "VMs made from it run as it",
                                         ("metadata", "metadata_startup_script", "disk.source_image")),
    "google_compute_region_instance_template": (("service_account.email",), "VMs made from it run as it",
                                                ("metadata", "metadata_startup_script", "disk.source_image")),
    "google_compute_instance_from_template": (("service_account.email",), "runs as it",
                                              ("metadata", "metadata_startup_script")),
    "google_cloud_run_service": (("template.spec.service_account_name",), "its containers run as it",
                                 ("template.spec.containers.image",)),
    "google_cloud_run_v2_service": (("template.service_account",), "its containers run as it",
                                    ("template.containers.image",)),
    "google_cloud_run_v2_job": (("template.template.service_account",), "its containers run as it",
                                ("template.template.containers.image",)),
    "google_cloud_run_v2_worker_pool": (("template.service_account",), "its containers run as it",
                                        ("template.containers.image",)),
    "google_cloudfunctions_function": (("service_account_email",), "its code runs as it",
                                       ("source_archive_bucket", "source_archive_object", "source_repository.url")),
    "google_cloudfunctions2_function": (("service_config.service_account_email", "build_config.service_account"),
                                        "its code (or its build) runs as it",
                                        ("build_config.source.storage_source.bucket",
                                         "build_config.source.repo_source.repo_name")),
    "google_cloudbuild_trigger": (("service_account",), "its builds run as it: whoever pushes to its source runs"
                                  " code with the identity", ("github.owner", "github.name",
                                                              "repository_event_config.repository",
                                                              "trigger_template.repo_name", "filename")),
    "google_cloud_scheduler_job": (("http_target.oauth_token.service_account_email",
                                    "http_target.oidc_token.service_account_email"),
                                   "sends the identity's token to a URL", ("http_target.uri",)),
    "google_cloud_tasks_queue": (("http_target.oauth_token.service_account_email",
                                  "http_target.oidc_token.service_account_email"),
                                 "sends the identity's token with every task", ("http_target.uri_override.host",)),
    "google_pubsub_subscription": (("push_config.oidc_token.service_account_email",),
                                   "sends the identity's OIDC token to its push endpoint",
                                   ("push_config.push_endpoint",)),
    "google_workflows_workflow": (("service_account",), "its steps call APIs as it", ("source_contents",)),
    "google_eventarc_trigger": (("service_account",), "invokes its destination as it", ("destination",)),
    "google_container_cluster": (("node_config.service_account", "node_pool.node_config.service_account",
                                  "cluster_autoscaling.auto_provisioning_defaults.service_account"),
                                 "its nodes run as it: any pod on them gets the identity's token", ()),
    "google_container_node_pool": (("node_config.service_account",),
                                   "its nodes run as it: any pod on them gets the identity's token", ()),
    "google_dataproc_cluster": (("cluster_config.gce_cluster_config.service_account",), "its VMs run as it",
                                ("cluster_config.initialization_action.script",)),
    "google_composer_environment": (("config.node_config.service_account",), "its DAGs run as it", ()),
    "google_dataflow_job": (("service_account_email",), "its workers run as it", ("template_gcs_path",)),
    "google_dataflow_flex_template_job": (("service_account_email",), "its workers run as it",
                                          ("container_spec_gcs_path",)),
    "google_notebooks_instance": (("service_account",), "its notebooks run as it", ()),
    "google_workbench_instance": (("gce_setup.service_accounts.email",), "its notebooks run as it", ()),
    "google_app_engine_standard_app_version": (("service_account",), "its code runs as it", ("deployment",)),
    "google_app_engine_flexible_app_version": (("service_account",), "its code runs as it", ("deployment",)),
}
# Data and ephemeral sources that mint a credential of the identity into state (or into what consumes them).
MINTS = {"google_service_account_access_token", "google_service_account_id_token", "google_service_account_jwt",
         "google_service_account_key"}
# Sections of a synthesized configuration that the scan understands; any other top-level key is UNKNOWN.
SECTIONS = {"//", "terraform", "provider", "resource", "data", "ephemeral", "output", "variable", "locals", "module",
            "check", "import", "moved", "removed"}


@dataclass(frozen=True)
class Protected:
    label: str                  # "trainer", "submitter", "token secret"
    kind: str                   # "identity" or "secret"
    pattern: str                # a regex of the literal names (email inside a member or resource name; secret id)
    defs: tuple[str, ...]       # "type.name" of the resources that define it (not scanned as references)
    refs: tuple[str, ...]       # "type.name" that stand for it (its definitions, and the secret's versions)
    email: str = ""             # an identity's email


def _flat(value, path: str = ""):
    """(dotted argument path without list indices, leaf string) for every string in a value."""
    if isinstance(value, dict):
        for k, x in value.items():
            if k == "//":
                continue
            yield from _flat(x, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for x in value:
            yield from _flat(x, path)
    elif isinstance(value, str):
        yield path, value
    elif value is not None and not isinstance(value, (bool, int, float)):
        yield path, json.dumps(value)


# label -> which token it leads to (review.graph filters the paths of each token's report by it).
LEADS_TO = {"trainer": "read", "submitter": "read", "token secret": "read",
            "publisher": "write", "write token secret": "write"}


def protected(plan: Plan, raw: dict | None = None) -> list[Protected]:
    """The trainer, the submitter and the token secret of a plan, with every name that stands for them; and the
    publisher and the write token's secret (publishing)."""
    out = []
    for label, output in (("trainer", "trainer_email"), ("submitter", "submitter_email"),
                          ("publisher", "publisher_email")):
        email = plan.output(output)
        if not email or unresolved(email):
            continue
        accounts = [r for r in plan.of_type("google_service_account")
                    if plan.attribute("google_service_account", r.name, "email") == email]
        refs = tuple(f"google_service_account.{r.name}" for r in accounts)
        # Its numeric unique id, where the plan shows it (an account that exists: a `terraform show -json` plan).
        uids = [str(r.values.get("unique_id")) for r in accounts if str(r.values.get("unique_id") or "").isdigit()]
        names = [re.escape(email.lower())] + uids
        out.append(Protected(label, "identity", r"(?<![\w.+-])(?:" + "|".join(names) + r")(?![\w-])",
                             refs, refs, email.lower()))
    for label, output in (("token secret", "token_secret"), ("write token secret", "write_token_secret")):
        token = plan.output(output) or ""
        m = re.fullmatch(r"projects/([^/]+)/secrets/([^/]+)", str(token))
        if not m:
            continue
        defs = [f"google_secret_manager_secret.{r.name}" for r in plan.of_type("google_secret_manager_secret")
                if plan.resolved(r).get("secret_id") == m.group(2)]
        versions = [f"google_secret_manager_secret_version.{r.name}"
                    for r in plan.of_type("google_secret_manager_secret_version")
                    if any(x in str(r.values.get("secret", "")) for x in defs + [token])]
        sid = re.escape(m.group(2))
        out.append(Protected(label, "secret", rf"^{sid}$|(?<![\w-])secrets/{sid}(?![\w-])",
                             tuple(defs), tuple(defs + versions)))
    return out


@functools.lru_cache(maxsize=None)
def _mention_pattern(address: str) -> re.Pattern:
    return re.compile(r"(?<![\w.-])" + re.escape(address) + r"(?![\w-])")


def _mentions(value: str, address: str) -> bool:
    # Compiled once per address: an environment with many teams asks this about a million times.
    return address in value and bool(_mention_pattern(address).search(value))


def _names(value: str, p: Protected, aliases: dict[str, set[str]]) -> bool:
    if re.search(p.pattern, value.lower() if p.kind == "identity" else value):
        return True
    return any(_mentions(value, ref) for ref in set(p.refs) | aliases.get(p.label, set()))


def _inert(rtype: str, arg: str, kind: str) -> str | None:
    for tglob, aglob, pkind, why in INERT:
        if pkind in ("*", kind) and fnmatch.fnmatchcase(rtype, tglob) and (
                fnmatch.fnmatchcase(arg, aglob) or arg.startswith(aglob.rstrip("*")) and aglob.endswith(".*")):
            return why
    return None


def _items(plan: Plan) -> list[tuple[str, str, str, dict, Resource | None]]:
    """(kind, type, address, values, resource) for every resource, data source, ephemeral, local and output."""
    items = [("resource", r.type, r.address, r.values, r) for r in plan.resources]
    for (t, n), v in plan.data.items():
        items.append(("data", f"data.{t}", f"data.{t}.{n}", v, None))
    for (t, n), v in plan.ephemeral.items():
        items.append(("ephemeral", f"ephemeral.{t}", f"ephemeral.{t}.{n}", v, None))
    for n, v in plan.locals.items():
        items.append(("local", "local", f"local.{n}", {n: v}, None))
    for n, v in plan.outputs.items():
        items.append(("output", "output", f"output.{n}", {n: v.get("value") if isinstance(v, dict) else v}, None))
    return items


def _arg_value(values: dict, arg: str):
    cur = values
    for part in arg.split("."):
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _controls(plan: Plan, r: Resource, args: tuple[str, ...]) -> str:
    v = plan.resolved(r)
    shown = []
    for a in args:
        x = _arg_value(v, a)
        if x not in (None, "", [], {}):
            text = x if isinstance(x, str) else json.dumps(x)
            shown.append(f"{a} = {text[:80] + '...' if len(text) > 80 else text}")
    own = [f"{g.get('member') or g.get('members')} ({g.get('role')})" for g in
           (plan.resolved(x) for x in plan.resources if x.type.startswith(r.type + "_iam_"))]
    return "; ".join(filter(None, ["; ".join(shown), ("its own IAM: " + ", ".join(map(str, own))) if own else
                                   "whoever may update it (its own IAM, or project-level edit rights)"]))


def _may_list(plan: Plan, values: dict, p: Protected) -> bool:
    """Whether a `data.google_service_accounts` (the accounts of a project, filtered by `prefix` on the account id
    and `regex` on the email) may list the protected account."""
    v = plan.resolve(values)
    email = p.email
    account_id, _, rest = email.partition("@")
    project = v.get("project") or plan.default_project()
    if not unresolved(project) and project and rest != f"{project}.iam.gserviceaccount.com":
        return False
    prefix, regex = v.get("prefix"), v.get("regex")
    if prefix and not unresolved(prefix) and not account_id.startswith(str(prefix)):
        return False
    if regex and not unresolved(regex):
        try:
            return bool(re.search(str(regex), email))
        except re.error:
            return True
    return True


def scan(plan: Plan) -> dict:
    """paths: references that hand out the token (with what controls them); unknowns: references the review does
    not model (UNKNOWN, fail unless accepted); inert: references a row of INERT explains (for the report)."""
    prot = protected(plan)
    paths, unknowns, inert = [], [], []
    for section in sorted(set(plan.sections) - SECTIONS):
        unknowns.append({"address": section, "field": "(section)", "value": section,
                         "why": f"a top-level `{section}` block the review does not read: it may name the trainer,"
                                " the submitter or the token"})
    # Data sources, locals and ephemeral values that stand for a protected thing become aliases of it: the account
    # data sources by whatever identifies the account (short id and project, email, name, unique id), or by a
    # filter that may list it; an account data source whose account cannot be told offline may be any of them.
    aliases: dict[str, set[str]] = {p.label: set() for p in prot}
    maybe: set[str] = set()
    for (t, n), v in plan.data.items():
        address = f"data.{t}.{n}"
        for p in (p for p in prot if p.kind == "identity"):
            if t == "google_service_account":
                email = data_account_email(plan, n)
                if email is None:
                    maybe.add(address)
                elif re.search(p.pattern, email.lower()):
                    aliases[p.label].add(address)
            elif t == "google_service_accounts" and _may_list(plan, v, p):
                aliases[p.label].add(address)
    for _ in range(3):
        for kind, rtype, address, values, _r in _items(plan):
            if kind not in ("data", "local", "ephemeral"):
                continue
            for p in prot:
                if any(_names(leaf, p, aliases) for _a, leaf in _flat(values)):
                    aliases[p.label].add(address)
    # What holds a token's value: the secrets' version resources, and data or ephemeral sources reading one.
    value_holders: set[str] = set()
    for secret in (p for p in prot if p.kind == "secret"):
        value_holders |= set(secret.refs) - set(secret.defs)
        for kind, rtype, address, values, _r in _items(plan):
            if kind in ("data", "ephemeral") and "secret_version" in rtype and any(
                    _names(leaf, secret, {}) for _a, leaf in _flat(values)):
                value_holders.add(address)
    for kind, rtype, address, values, r in _items(plan):
        own = {f"{r.type}.{r.name}"} if r else set()
        leaves = list(_flat(values)) + [(a, "${" + ref + "}") for a, ref in (r.config_refs if r else ())]
        for arg, leaf in leaves:
            for p in prot:
                if own & set(p.defs) or not _names(leaf, p, {k: v - {address} for k, v in aliases.items()}):
                    continue
                holds_value = any(_mentions(leaf, h) for h in value_holders - {address})
                why = None if holds_value else _inert(rtype, arg, p.kind)
                row = {"address": address, "field": arg, "protected": p.label,
                       "value": leaf if len(leaf) <= 120 else leaf[:117] + "..."}
                if why:
                    inert.append(row | {"why": why})
                    continue
                base = rtype.removeprefix("data.").removeprefix("ephemeral.")
                if p.kind == "secret":
                    what = "write token" if p.label.startswith("write") else "token"
                    how = (f"reads the {what}'s value into Terraform state (and into every output built from it):"
                           f" whoever reads the state reads the {what}" if address in value_holders or holds_value
                           else f"uses the {p.label} in {arg}, beyond the stacks' own use")
                    paths.append(row | {"kind": "uses-token", "how": how})
                    continue
                if kind in ("data", "ephemeral") and base in MINTS:
                    paths.append(row | {"kind": "mints-token", "how": f"mints a credential of the {p.label} into"
                                        " Terraform state: whoever reads the state acts as it"})
                    continue
                known = RUNS_AS.get(rtype)
                if r is not None and known and arg in known[0]:
                    paths.append(row | {"kind": "runs-as", "how": f"{known[1]} ({p.label}); controlled by: "
                                                                   f"{_controls(plan, r, known[2])}"})
                    continue
                unknowns.append({"address": address, "field": arg, "value": row["value"],
                                 "why": f"names the {p.label} in an argument the review does not model"
                                        f" ({rtype}.{arg}): it may run as it or speak for it; add a row to"
                                        " review.references with why it confers nothing, or accept it"})
        for arg, leaf in leaves:
            hits = sorted(a for a in maybe - {address} if _mentions(leaf, a))
            if hits and not _inert(rtype, arg, "identity") and not any(_names(leaf, p, aliases) for p in prot):
                unknowns.append({"address": address, "field": arg, "value": leaf[:120],
                                 "why": f"uses {hits[0]}, whose account is not known offline (its account_id or"
                                        " project is an expression, or a unique id the plan does not show): it may"
                                        " be the trainer or the submitter"})
    key = lambda x: (x["address"], x["field"])  # noqa: E731
    return {"paths": sorted(paths, key=key), "unknowns": sorted(unknowns, key=key),
            "inert": sorted(inert, key=key)}

"""What Google's APIs reject, checked on the synthesized configuration before anything is written.

Nothing here has been applied (the providers cannot be downloaded where this is built), so Google's documented
constraints stand in for the apply: one row per constraint, each citing the page it comes from. `make synth`
(main.py) stops with exit 2 naming the resource, the field and the fix; the local cloud runs the same rows over the
plan it creates resources from, and its Secret Manager answers a bad annotation or label with INVALID_ARGUMENT, so
a plan Google would refuse cannot pass the demo.

Values that are Terraform references (`${...}`) are not known at synth; the resource they point to is checked
where it is declared. Per-project limits are counted over every stack synthesized together that shares a project
and region.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from stacks.errors import UsageError

SM_SECRET = "https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets#Secret"
SM_CMEK = "https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets#CustomerManagedEncryption"
LABELS = "https://cloud.google.com/resource-manager/docs/labels-overview#requirements"
GCS_NAMES = "https://cloud.google.com/storage/docs/buckets#naming"
GCS_CMEK = "https://cloud.google.com/storage/docs/encryption/customer-managed-keys#restrictions"
GCS_SOFT_DELETE = "https://cloud.google.com/storage/docs/soft-delete#retention-duration"
SA_ID = "https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/create"
PUBSUB_NAMES = "https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names"
PUBSUB_RETENTION = "https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics#Topic"
COMPUTE_NAMES = "https://cloud.google.com/compute/docs/naming-resources#resource-name-format"
SWP_QUOTAS = "https://cloud.google.com/secure-web-proxy/quotas"
SWP_CEL = "https://cloud.google.com/secure-web-proxy/docs/cel-matcher-language-reference"
TLS_POLICY = "https://cloud.google.com/secure-web-proxy/docs/reference/network-security/rest/v1/projects.locations.tlsInspectionPolicies"
CA_PROVIDER = "https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/privateca_certificate_authority"
VPCSC_INGRESS = "https://cloud.google.com/vpc-service-controls/docs/ingress-egress-rules"
CAS_TIERS = "https://cloud.google.com/certificate-authority-service/docs/tiers"

ANNOTATION_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")
TOPIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}$")
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
DURATION = re.compile(r"^([0-9]+)s$")
KMS_LOCATION = re.compile(r"^projects/[^/]+/locations/([^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$")

# Secure Web Proxy's quotas and limits page (per project and region unless said otherwise).
SWP_MAX_RULES_PER_POLICY = 250
SWP_MAX_URL_LISTS = 10
SWP_MAX_POLICIES = 10
SWP_MAX_GATEWAYS = 5
SWP_MAX_URL_LIST_ENTRIES = 2500
SWP_MAX_MATCHER_CHARS = 2048
SWP_MAX_LOGICAL_OPERATORS = 12     # CEL matcher reference (stated in its Japanese edition)


def _known(value) -> bool:
    return value is not None and "${" not in json.dumps(value)


def _first(value):
    """A nested block as Terraform JSON writes it (a one-element list, or the object)."""
    if isinstance(value, list):
        return value[0] if value and isinstance(value[0], dict) else {}
    return value if isinstance(value, dict) else {}


def _seconds(value) -> int | None:
    m = DURATION.match(str(value)) if _known(value) else None
    return int(m.group(1)) if m else None


def annotation_problems(annotations: dict) -> list[str]:
    """Secret.annotations: keys 1-63 characters, at most 128 bytes, begin and end with [a-zA-Z0-9], only -, _, .
    and alphanumerics between; keys and values together under 16 KiB."""
    out = []
    for key in annotations:
        if not ANNOTATION_KEY.match(key) or len(key.encode()) > 128:
            out.append(f"annotation key {key!r} must be 1-63 characters, begin and end with a letter or digit,"
                       " with only '-', '_', '.' inside")
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size >= 16 * 1024:
        out.append(f"annotations total {size} bytes; keys and values together must be under 16 KiB")
    return out


def label_problems(labels: dict) -> list[str]:
    out = []
    if len(labels) > 64:
        out.append(f"{len(labels)} labels; at most 64 per resource")
    for key, value in labels.items():
        if not LABEL_KEY.match(str(key)):
            out.append(f"label key {key!r} must start with a lowercase letter and hold only lowercase letters,"
                       " digits, '_' or '-' (1-63 characters)")
        if _known(value) and not LABEL_VALUE.match(str(value)):
            out.append(f"label value {value!r} (key {key!r}) may hold only lowercase letters, digits, '_' or '-'"
                       " (0-63 characters)")
    return out


def secret_id_problems(secret_id: str) -> list[str]:
    return [] if SECRET_ID.match(secret_id) else [
        f"secret id {secret_id!r} must be 1-255 letters, digits, '-' or '_'"]


@dataclass(frozen=True)
class Constraint:
    id: str
    types: str              # resource type glob
    field: str
    page: str
    fix: str
    check: Callable[[dict], Iterator[str]]


def _annotations(v):
    a = v.get("annotations")
    if _known(a) and isinstance(a, dict):
        yield from annotation_problems(a)


def _labels(v):
    for key in ("labels", "default_labels"):
        a = v.get(key)
        if _known(a) and isinstance(a, dict):
            yield from label_problems(a)


def _secret_id(v):
    if _known(v.get("secret_id")):
        yield from secret_id_problems(str(v["secret_id"]))


def _secret_cmek(v):
    replicas = _first(_first(v.get("replication")).get("user_managed")).get("replicas") or []
    for rep in replicas if isinstance(replicas, list) else []:
        key = _first(rep.get("customer_managed_encryption")).get("kms_key_name")
        loc = rep.get("location")
        m = KMS_LOCATION.match(str(key)) if _known(key) else None
        if m and _known(loc) and m.group(1) != loc:
            yield (f"replica {loc} is encrypted with a key in {m.group(1)}; each replica's key must be in that"
                   " replica's location")


def _bucket_name(v):
    name = v.get("name")
    if _known(name) and (not BUCKET_NAME.match(str(name)) or str(name).startswith("goog") or "google" in str(name)
                         or ".." in str(name)):
        yield (f"bucket name {name!r}: 3-63 lowercase letters, digits, '-', '_' or '.', starting and ending with"
               " a letter or digit, not starting with 'goog' nor containing 'google'")


def _bucket_cmek(v):
    key = _first(v.get("encryption")).get("default_kms_key_name")
    m = KMS_LOCATION.match(str(key)) if _known(key) else None
    loc = str(v.get("location", "")).lower()
    if m and _known(v.get("location")) and m.group(1) != loc:
        yield f"bucket in {loc} has a default key in {m.group(1)}; the key must be in the bucket's location"


def _soft_delete(v):
    secs = _first(v.get("soft_delete_policy")).get("retention_duration_seconds")
    if _known(secs) and secs is not None and not (int(secs) == 0 or 604800 <= int(secs) <= 7776000):
        yield f"soft delete retention {secs}s: 0, or 7 to 90 days (604800-7776000 s)"


def _account_id(v):
    aid = v.get("account_id")
    if _known(aid) and not ACCOUNT_ID.match(str(aid)):
        yield f"account id {aid!r}: 6-30 lowercase letters, digits or '-', starting with a letter"


def _topic_name(v):
    name = v.get("name")
    if _known(name) and (not TOPIC_NAME.match(str(name)) or str(name).startswith("goog")):
        yield f"topic name {name!r}: 3-255 characters, starting with a letter, not 'goog'"


def _topic_retention(v):
    secs = _seconds(v.get("message_retention_duration"))
    if secs is not None and not 600 <= secs <= 31 * 86400:
        yield f"message retention {secs}s: 10 minutes to 31 days"


def _rotation(v):
    secs = _seconds(_first(v.get("rotation")).get("rotation_period"))
    if secs is not None and not 3600 <= secs <= 100 * 365 * 86400:
        yield f"rotation period {secs}s: at least 3600 s and at most 100 years"


def _destroy_ttl(v):
    secs = _seconds(v.get("version_destroy_ttl"))
    if secs is not None and not 86400 <= secs <= 1000 * 86400:
        yield f"version destroy TTL {secs}s: 1 to 1000 days"


def _secret_topics(v):
    topics = v.get("topics")
    if isinstance(topics, list) and len(topics) > 10:
        yield f"{len(topics)} topics: at most 10 per secret"


def _rfc1035_name(v):
    name = v.get("name")
    if _known(name) and not RFC1035.match(str(name)):
        yield f"name {name!r}: 1-63 lowercase letters, digits or '-', starting with a letter (RFC 1035)"


def _firewall_priority(v):
    p = v.get("priority")
    if _known(p) and p is not None and not 0 <= int(p) <= 65535:
        yield f"priority {p}: 0 to 65535"


def _policy_rule_priority(v):
    p = v.get("priority")
    if _known(p) and p is not None and not 0 <= int(p) <= 2147483647:
        yield f"priority {p}: 0 to 2147483647"


def _matchers(v):
    for field in ("session_matcher", "application_matcher"):
        expr = v.get(field)
        if not _known(expr) or not expr:
            continue
        if len(expr) > SWP_MAX_MATCHER_CHARS:
            yield f"{field} is {len(expr)} characters; at most {SWP_MAX_MATCHER_CHARS}"
        ops = expr.count("&&") + expr.count("||") + len(re.findall(r"!(?!=)", expr))
        if ops > SWP_MAX_LOGICAL_OPERATORS:
            yield f"{field} has {ops} logical operators; at most {SWP_MAX_LOGICAL_OPERATORS}"


def _url_list_entries(v):
    values = v.get("values")
    if isinstance(values, list) and len(values) > SWP_MAX_URL_LIST_ENTRIES:
        yield f"{len(values)} entries; at most {SWP_MAX_URL_LIST_ENTRIES} per URL list"


def _min_tls(v):
    if v.get("min_tls_version") not in (None, "", "TLS_VERSION_UNSPECIFIED"):
        yield (f"min_tls_version {v['min_tls_version']!r} is documented as not yet honoured by Secure Web Proxy:"
               " leave it unset rather than promise it")


def _ca_path_length(v):
    ca = _first(_first(_first(v.get("config")).get("x509_config")).get("ca_options"))
    if ca.get("max_issuer_path_length") == 0 and ca.get("zero_max_issuer_path_length") is not True:
        yield ("max_issuer_path_length = 0 is dropped by the provider unless zero_max_issuer_path_length = true:"
               " the CA would have no path length limit")


def _ca_tier(v):
    if _known(v.get("tier")) and v.get("tier") not in ("ENTERPRISE", "DEVOPS"):
        yield f"tier {v.get('tier')!r}: ENTERPRISE or DEVOPS"


def _gateway(v):
    if _known(v.get("type")) and v.get("type") not in ("SECURE_WEB_GATEWAY", "OPEN_MESH"):
        yield f"type {v.get('type')!r}: SECURE_WEB_GATEWAY or OPEN_MESH"
    if v.get("type") == "SECURE_WEB_GATEWAY" and v.get("routing_mode") not in (None, "EXPLICIT_ROUTING_MODE",
                                                                                "NEXT_HOP_ROUTING_MODE"):
        yield f"routing_mode {v.get('routing_mode')!r}: EXPLICIT_ROUTING_MODE or NEXT_HOP_ROUTING_MODE"


def _attachment(v):
    if _known(v.get("connection_preference")) and v.get("connection_preference") not in ("ACCEPT_AUTOMATIC",
                                                                                         "ACCEPT_MANUAL"):
        yield f"connection_preference {v.get('connection_preference')!r}: ACCEPT_AUTOMATIC or ACCEPT_MANUAL"


def _perimeter(v):
    """A perimeter enforcing restricted services without an ingress policy locks out every caller outside it:
    Terraform, `hfgate token set`, `hfgate submit` from a workstation or CI."""
    status = _first(v.get("status"))
    policies = [p for p in status.get("ingress_policies") or [] if isinstance(p, dict)]
    usable = [p for p in policies if _first(p.get("ingress_from")).get("identities") and p.get("ingress_to")]
    if status.get("restricted_services") and not usable and not status.get("access_levels"):
        yield ("the enforced perimeter restricts services but has no ingress policy (with identities and a target)"
               " or access level: callers outside it (Terraform, hfgate token set, hfgate submit) are denied")
    for part in ("status", "spec"):
        for res in _first(v.get(part)).get("resources") or []:
            if _known(res) and not re.match(r"^projects/[0-9]+$", str(res)):
                yield f"{part}.resources {res!r}: a perimeter holds projects by number (projects/123)"


CONSTRAINTS: tuple[Constraint, ...] = (
    Constraint("secret-annotations", "google_secret_manager_secret", "annotations", SM_SECRET,
               "use keys like \"hfgate-purpose\" (letters, digits, '-', '_', '.')", _annotations),
    Constraint("secret-id", "google_secret_manager_secret", "secret_id", SM_SECRET,
               "shorten or rename the prefix in config/<env>.toml", _secret_id),
    Constraint("secret-cmek-location", "google_secret_manager_secret", "replication.user_managed.replicas",
               SM_CMEK, "give each replica location a key in that location (secret_kms_keys in config/<env>.toml)",
               _secret_cmek),
    Constraint("secret-rotation", "google_secret_manager_secret", "rotation.rotation_period", SM_SECRET,
               "set token_rotation_days between 1 and 365", _rotation),
    Constraint("secret-destroy-ttl", "google_secret_manager_secret", "version_destroy_ttl", SM_SECRET,
               "use a TTL of 1 to 1000 days", _destroy_ttl),
    Constraint("secret-topics", "google_secret_manager_secret", "topics", SM_SECRET, "use at most 10 topics",
               _secret_topics),
    Constraint("labels", "google_*", "labels", LABELS,
               "fix the labels in config/<env>.toml (lowercase letters, digits, '_', '-')", _labels),
    Constraint("provider-labels", "provider.google", "default_labels", LABELS,
               "fix the labels in config/<env>.toml (lowercase letters, digits, '_', '-')", _labels),
    Constraint("bucket-name", "google_storage_bucket", "name", GCS_NAMES,
               "shorten the prefix or project id in config/<env>.toml", _bucket_name),
    Constraint("bucket-cmek-location", "google_storage_bucket", "encryption.default_kms_key_name", GCS_CMEK,
               "use a key in the bucket's region (kms_key in config/<env>.toml)", _bucket_cmek),
    Constraint("bucket-soft-delete", "google_storage_bucket", "soft_delete_policy.retention_duration_seconds",
               GCS_SOFT_DELETE, "use 0, or 7 to 90 days", _soft_delete),
    Constraint("service-account-id", "google_service_account", "account_id", SA_ID,
               "shorten the prefix in config/<env>.toml", _account_id),
    Constraint("topic-name", "google_pubsub_topic", "name", PUBSUB_NAMES, "rename the topic", _topic_name),
    Constraint("topic-retention", "google_pubsub_topic", "message_retention_duration", PUBSUB_RETENTION,
               "use 10 minutes to 31 days", _topic_retention),
    Constraint("compute-name", "google_compute_*", "name", COMPUTE_NAMES,
               "shorten the prefix in config/<env>.toml (lowercase letters, digits, '-')", _rfc1035_name),
    Constraint("firewall-priority", "google_compute_firewall", "priority", COMPUTE_NAMES, "use 0 to 65535",
               _firewall_priority),
    Constraint("swp-rule-priority", "google_network_security_gateway_security_policy_rule", "priority", SWP_CEL,
               "use 0 to 2147483647", _policy_rule_priority),
    Constraint("swp-matcher", "google_network_security_gateway_security_policy_rule", "session/application matcher",
               SWP_QUOTAS, "split the allowlist (stacks.egress_rules packs repositories into rules within the"
               " limits)", _matchers),
    Constraint("swp-url-list-entries", "google_network_security_url_lists", "values", SWP_QUOTAS,
               "use fewer entries", _url_list_entries),
    Constraint("tls-min-version", "google_network_security_tls_inspection_policy", "min_tls_version", TLS_POLICY,
               "remove min_tls_version", _min_tls),
    Constraint("ca-path-length", "google_privateca_certificate_authority",
               "config.x509_config.ca_options.zero_max_issuer_path_length", CA_PROVIDER,
               "set zero_max_issuer_path_length = true with max_issuer_path_length = 0", _ca_path_length),
    Constraint("ca-pool-tier", "google_privateca_ca_pool", "tier", CAS_TIERS, "use DEVOPS for TLS inspection",
               _ca_tier),
    Constraint("swp-gateway", "google_network_services_gateway", "type/routing_mode", SWP_QUOTAS,
               "use SECURE_WEB_GATEWAY with EXPLICIT_ROUTING_MODE", _gateway),
    Constraint("network-attachment", "google_compute_network_attachment", "connection_preference", COMPUTE_NAMES,
               "use ACCEPT_AUTOMATIC", _attachment),
    Constraint("perimeter-ingress", "google_access_context_manager_service_perimeter", "status.ingress_policies",
               VPCSC_INGRESS, "list who must reach the project from outside in perimeter_ingress_identities"
               " (config/<env>.toml), or keep perimeter_dry_run = true until they are", _perimeter),
)

# Per-project-and-region counts (Secure Web Proxy's quotas page): (type, limit, what, fix).
PROJECT_LIMITS = (
    ("google_network_security_url_lists", SWP_MAX_URL_LISTS, "URL lists",
     "fewer environments per project and region, or fewer URL lists"),
    ("google_network_security_gateway_security_policy", SWP_MAX_POLICIES, "gateway security policies",
     "fewer environments per project and region"),
    ("google_network_services_gateway", SWP_MAX_GATEWAYS, "Secure Web Proxy gateways",
     "fewer environments per project and region"),
)


@dataclass(frozen=True)
class Violation:
    stack: str
    address: str
    field: str
    problem: str
    page: str
    fix: str

    def __str__(self) -> str:
        return f"{self.stack}: {self.address} {self.field}: {self.problem} ({self.page}); fix: {self.fix}"


class ConstraintError(UsageError):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"the synthesized plan breaks {len(violations)} of Google's documented constraints"
                         f" (the first apply would fail):\n{lines}", "fix each as it says; nothing was written")


def _project_region(config: dict, values: dict) -> tuple[str, str]:
    google = _first((config.get("provider") or {}).get("google"))
    return (str(values.get("project") or google.get("project", "")),
            str(values.get("location") or values.get("region") or google.get("region", "")))


def check(configs: dict[str, dict]) -> list[Violation]:
    """Every row against every resource of every stack (Terraform JSON: `{stack: cdk.tf.json}`)."""
    out: list[Violation] = []
    counts: Counter = Counter()
    rules_per_policy: Counter = Counter()
    for stack, config in configs.items():
        items = [(t, n, v) for t, by_name in (config.get("resource") or {}).items() for n, v in by_name.items()]
        items += [(f"provider.{p}", "", _first(v)) for p, v in (config.get("provider") or {}).items()]
        for rtype, name, values in items:
            for c in CONSTRAINTS:
                if fnmatch.fnmatchcase(rtype, c.types):
                    for problem in c.check(values):
                        out.append(Violation(stack, f"{rtype}.{name}".rstrip("."), c.field, problem, c.page, c.fix))
            for ltype, *_ in PROJECT_LIMITS:
                if rtype == ltype:
                    counts[(ltype, *_project_region(config, values))] += 1
            if rtype == "google_network_security_gateway_security_policy_rule":
                rules_per_policy[(stack, str(values.get("gateway_security_policy")))] += 1
    for (ltype, project, region), n in sorted(counts.items()):
        limit, what, fix = next((lim, w, f) for t, lim, w, f in PROJECT_LIMITS if t == ltype)
        if n > limit:
            out.append(Violation(", ".join(configs), f"{ltype} (project {project}, {region})", "count",
                                 f"{n} {what}; Secure Web Proxy allows {limit} per project and region", SWP_QUOTAS,
                                 fix))
    for (stack, policy), n in sorted(rules_per_policy.items()):
        if n > SWP_MAX_RULES_PER_POLICY:
            out.append(Violation(stack, f"google_network_security_gateway_security_policy ({policy})", "rules",
                                 f"{n} rules; Secure Web Proxy allows {SWP_MAX_RULES_PER_POLICY} per policy",
                                 SWP_QUOTAS, "list fewer repositories (allow_models / allow_datasets)"))
    return out


def enforce(configs: dict[str, dict]) -> None:
    violations = check(configs)
    if violations:
        raise ConstraintError(violations)

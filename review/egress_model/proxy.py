"""What the planned Secure Web Proxy rules allow, computed from the rules rather than replayed.

The request space is cut into classes the rules cannot tell apart: source addresses into the pieces the named ranges
(each team's subnet, the platform's other subnets, anything else) and every `inIpRange` make; hosts into the hosts
and suffixes the rules and URL lists name, the protocol table's hosts, the Hugging Face hosts no download needs, and
an unrelated host; methods into those the rules name and every other HTTP method. Each class is decided once, in
priority order (disabled rules skipped, an application matcher skipped for HTTPS without TLS inspection: the proxy
cannot see the request). Where a decision depends on the path, it is decided for witness paths generated from the
rules' own path terms (each listed path, each prefix followed by a name and by every part a server may normalize,
examples of each regular expression) and a few probes.

Each allowed request is compared with what the allowlist implies (stacks.hub_protocol's DOWNLOAD rows for the
repositories listed for that source range; read methods only): anything more is a finding naming the rule that
allowed it and one example request.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from review.egress_model.cel import Point, Unsupported, atoms, evaluate, parse, path_witnesses
from review.plan import Plan, unresolved

RULE_TYPE = "google_network_security_gateway_security_policy_rule"
POLICY_TYPE = "google_network_security_gateway_security_policy"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READ = ("GET", "HEAD")
OTHER_HOST = "unrelated.example.com"
PROBE_PATHS = ("/", "/x", "/api/whoami-v2", "/api/models", "/api/datasets/someone-else/unlisted/parquet")


@dataclass
class ProxyRule:
    name: str
    address: str
    priority: int
    allow: bool
    enabled: bool
    inspected: bool             # tls_inspection_enabled on the rule and an inspection policy on the gateway policy
    session_text: str
    application_text: str
    session: object = None      # parsed terms (review.egress_model.cel)
    application: object = None

    def applies_to_https(self) -> bool:
        return self.enabled and (not self.application_text or self.inspected)


@dataclass
class SourceRange:
    """A named range of client addresses and what the allowlist lets it download."""
    name: str                   # "team research", "platform", "anything else"
    networks: list              # ip_networks
    models: tuple[str, ...] | None = None     # None: nothing expected; () with datasets (): any repository
    datasets: tuple[str, ...] | None = None
    cidr: str = ""

    @property
    def expects_downloads(self) -> bool:
        return self.models is not None


@dataclass
class Allowance:
    source: str
    host: str
    method: str
    path: str                   # an example path, or "*" when the decision does not depend on the path
    rule: str
    address: str


@dataclass
class ProxyModel:
    rules: list[ProxyRule]
    lists: dict[str, tuple[str, ...]]
    unknowns: list[dict] = field(default_factory=list)     # {"address", "field", "why"}
    findings: list[dict] = field(default_factory=list)     # {"address", "rule", "what", "example"}
    table: list[dict] = field(default_factory=list)        # per source range: host, methods, paths


def read_rules(plan: Plan) -> ProxyModel:
    from review.egress import ProxyPolicy
    policy = ProxyPolicy.from_plan(plan)
    inspection = policy.inspection
    lists = {k: tuple(v) for k, v in policy.url_lists.items()}
    model = ProxyModel([], lists)
    for problem in policy.problems:
        address, _, why = problem.partition(": ")
        model.unknowns.append({"address": address, "field": "matchers", "why": why})
    # One policy, one priority order: with several gateway security policies (or gateways) the rules of each are a
    # separate order, a job may use any gateway its network reaches, and one policy's TLS inspection says nothing
    # about another's rules. The model reads one; more are UNKNOWN.
    for rtype in (POLICY_TYPE, "google_network_services_gateway"):
        for extra in plan.of_type(rtype)[1:]:
            model.unknowns.append({"address": extra.address, "field": "type",
                                   "why": f"a second {rtype}: the egress model reads one gateway and one policy"
                                          " (rules of several policies are not one priority order)"})
    # The rules that count are those of the policy the gateway applies: a gateway whose policy the plan does not
    # hold (or that is not known offline) is UNKNOWN; a rule of another policy decides nothing here.
    ours = next(iter(plan.of_type(POLICY_TYPE)), None)
    our_names = {ours.name, str(plan.resolved(ours).get("name"))} if ours else set()

    def is_ours(raw) -> bool | None:
        text = str(raw or "")
        ref = re.search(r"google_network_security_gateway_security_policy\.([^.}\s]+)", text)
        if ref:
            return ours is not None and ref.group(1) == ours.name
        if not text or unresolved(text):
            return None
        return text.rstrip("/").rsplit("/", 1)[-1] in our_names

    for g in plan.of_type("google_network_services_gateway"):
        if not is_ours(g.values.get("gateway_security_policy")):
            model.unknowns.append({"address": g.address, "field": "gateway_security_policy",
                                   "why": f"the gateway applies {g.values.get('gateway_security_policy')!r}, not the"
                                          " plan's gateway security policy (or not known offline): the rules read"
                                          " here may not be the ones it applies"})
    raw_rules = {r.address: r.values for r in plan.of_type(RULE_TYPE)}
    outside = set()
    for r in policy.rules:
        mine = is_ours(raw_rules.get(r.address, {}).get("gateway_security_policy"))
        if mine is None:
            model.unknowns.append({"address": r.address, "field": "gateway_security_policy",
                                   "why": "not known offline: cannot tell which policy the rule belongs to"})
        if not mine:
            outside.add(r.address)
    policy.rules = [r for r in policy.rules if r.address not in outside]
    by_priority: dict[int, list] = {}
    for r in policy.rules:
        by_priority.setdefault(r.priority, []).append(r)
    for tied in by_priority.values():
        if len({r.action for r in tied if r.enabled}) > 1:
            for r in tied:
                model.unknowns.append({"address": r.address, "field": "priority",
                                       "why": f"priority {r.priority} is shared by an allow and a deny rule"
                                              f" ({', '.join(sorted(x.name for x in tied))}): which applies first is"
                                              " not documented"})
    for r in policy.rules:
        rule = ProxyRule(r.name, r.address, r.priority, r.action == "allow", r.enabled,
                         r.tls_inspection and inspection, r.session_matcher, r.application_matcher)
        try:
            rule.session = parse(r.session_matcher)
            rule.application = parse(r.application_matcher)
            for a in list(atoms(rule.session)) + list(atoms(rule.application)):
                if a.kind == "url_list" and a.value not in lists:
                    raise Unsupported(f"URL list {a.value} is not in the plan")
        except Unsupported as exc:
            model.unknowns.append({"address": r.address, "field": "matcher", "why": f"outside the CEL subset the"
                                   f" egress model reads: {exc}"})
            continue
        if r.action not in ("allow", "deny"):
            model.unknowns.append({"address": r.address, "field": "basic_profile",
                                   "why": f"{r.action!r} is neither ALLOW nor DENY"})
            continue
        model.rules.append(rule)
        if r.application_matcher and not rule.inspected:
            why = ("the rule has no tls_inspection_enabled" if not r.tls_inspection else
                   "the gateway security policy has no TLS inspection policy")
            model.findings.append({
                "address": r.address, "rule": r.name,
                "what": f"its application matcher cannot be evaluated on HTTPS ({why}): the proxy never applies it"
                        f" to HTTPS requests, so {'the deny it states does not hold' if r.action == 'deny' else 'it allows nothing'}",
                "example": ""})
    return model


# Host classes ------------------------------------------------------------------------------------------------------
def host_representatives(model: ProxyModel, known_hosts: tuple[str, ...], non_download: tuple[str, ...]) -> list[str]:
    """At least one host per class the rules can tell apart: every literal host, one made-up host under every
    suffix (`q0x9` + suffix: it matches that suffix and no longer one), the protocol table's hosts, the Hugging
    Face hosts no download needs, and an unrelated host."""
    literal, suffixes = set(known_hosts) | set(non_download) | {OTHER_HOST}, set()
    for rule in model.rules:
        for a in list(atoms(rule.session)) + list(atoms(rule.application)):
            if a.kind == "host_eq":
                literal.add(a.value)
            elif a.kind == "host_suffix":
                suffixes.add(a.value)
            elif a.kind == "url_list":
                for entry in model.lists.get(a.value, ()):
                    d = entry.split("/", 1)[0].lower()
                    if d.startswith("*."):
                        suffixes.add(d[1:])
                    elif d.startswith("*"):
                        literal.add(d[1:])
                        suffixes.add("." + d[1:])
                    else:
                        literal.add(d)
    return sorted(literal | {"q0x9" + s for s in suffixes})


def source_pieces(model: ProxyModel, ranges: list[SourceRange]) -> list[tuple[SourceRange, ipaddress.IPv4Address]]:
    """(range, one address) per piece of each range that the rules' `inIpRange` terms cut it into."""
    cuts = {a.value for r in model.rules for a in list(atoms(r.session)) + list(atoms(r.application))
            if a.kind == "src" and a.value.version == 4}
    out = []
    for rng in ranges:
        pieces = list(rng.networks)
        for cut in cuts:
            nxt = []
            for p in pieces:
                if p.subnet_of(cut) or not p.overlaps(cut):
                    nxt.append(p)
                else:        # cut lies inside p: p minus cut, and cut
                    nxt += list(p.address_exclude(cut)) + [cut]
            pieces = nxt
        seen = set()
        for p in pieces:
            sig = frozenset(c for c in cuts if p.subnet_of(c))
            if sig not in seen:
                seen.add(sig)
                out.append((rng, p.network_address if p.num_addresses == 1 else next(iter(p.hosts()), p.network_address)))
    return out


# The decision -----------------------------------------------------------------------------------------------------
def _candidates(model: ProxyModel, src, host: str, method: str) -> list[tuple[ProxyRule, object, object]]:
    """The rules that may apply to (source, host, method), in priority order, with their partial results."""
    out = []
    p = Point(src, host, method, None)
    for rule in model.rules:
        if not rule.applies_to_https():
            continue
        s = evaluate(rule.session, p, model.lists)
        if s is False:
            continue
        a = evaluate(rule.application, p, model.lists) if rule.application_text else True
        if a is False:
            continue
        out.append((rule, s, a))
        if s is True and a is True:
            break
    return out


def decide(cands, src, host, method, path, lists) -> ProxyRule | None:
    p = Point(src, host, method, path)
    for rule, s, a in cands:
        if s is None and not evaluate(rule.session, p, lists):
            continue
        if a is None and not evaluate(rule.application, p, lists):
            continue
        return rule
    return None


def allowances(model: ProxyModel, ranges: list[SourceRange], known_hosts: tuple[str, ...],
               non_download: tuple[str, ...], ambiguous: tuple[str, ...]) -> list[Allowance]:
    """Every class of request the rules allow, with an example path (or "*")."""
    hosts = host_representatives(model, known_hosts, non_download)
    methods = sorted(set(HTTP_METHODS) | {m for r in model.rules for a in atoms(r.application)
                                          if a.kind == "method_in" for m in a.value})
    out: list[Allowance] = []
    memo: dict[tuple, list[tuple[str, ProxyRule]]] = {}
    for rng, src in source_pieces(model, ranges):
        for host in hosts:
            for method in methods:
                cands = _candidates(model, src, host, method)
                if not cands:
                    continue
                key = tuple((id(r), s, a) for r, s, a in cands)
                if key not in memo:
                    memo[key] = _path_decisions(model, cands, src, host, method, ambiguous)
                for path, rule in memo[key]:
                    out.append(Allowance(rng.name, host, method, path, rule.name, rule.address))
    return out


def _path_decisions(model, cands, src, host, method, ambiguous) -> list[tuple[str, ProxyRule]]:
    first, s, a = cands[0]
    if s is True and a is True:
        return [("*", first)] if first.allow else []
    witnesses = set(PROBE_PATHS)
    for rule, _s, _a in cands:
        witnesses |= path_witnesses(rule.application, ambiguous) | path_witnesses(rule.session, ambiguous)
    out = []
    for path in sorted(witnesses):
        rule = decide(cands, src, host, method, path, model.lists)
        if rule is not None and rule.allow:
            out.append((path, rule))
    last, s, a = cands[-1]
    if s is True and a is True and last.allow:
        out.append(("*", last))       # every path no earlier rule denies
    return out


# What the allowlist implies ----------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{(model|dataset|rev|file|hash|anything)\}|\[|\]")


def shape_regex(template: str, pinned_rev: bool) -> re.Pattern:
    """A protocol table path template as a regular expression; the repository id is the `repo` group."""
    def sub(m: re.Match) -> str:
        t = m.group(0)
        if t == "[":
            return "(?:"
        if t == "]":
            return ")?"
        name = m.group(1)
        return {"model": r"(?P<repo>[^/]+/[^/]+)", "dataset": r"(?P<repo>[^/]+/[^/]+)",
                "rev": r"(?P<rev>[^/]+)", "file": r".+", "hash": r"[0-9a-f]{64}", "anything": r".*"}[name]
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos:m.start()]))
        out.append(sub(m))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


class Expected:
    """What a source range's downloads need: the protocol table's shapes for its listed repositories, read methods
    only, no path a server may normalize into another."""

    def __init__(self, ambiguous: tuple[str, ...]):
        from stacks import hub_protocol as hp
        self.ambiguous = ambiguous
        self.role_of = {h.name: h.role for h in hp.HOSTS}
        self.shapes = [(s.role, frozenset(s.methods), s.repo_scoped, s.kinds, shape_regex(s.path, True),
                        "xet-read-token" in s.path) for s in hp.DOWNLOAD]
        self.templates = [(s.role, shape_regex(s.path, True), s.path) for s in hp.DOWNLOAD]

    def shapes_of(self, host: str, paths: set[str]) -> list[str]:
        """Short names of the table's shapes (of the host's role) the paths are instances of, in the table's
        order: `info`, `revision`, `tree`, `resolve`, `xet-read-token`, or the template itself."""
        out: list[str] = []
        for role, rx, t in self.templates:
            if role != self.role_of.get(host) or not any(rx.match(p) for p in paths):
                continue
            name = next((k for k in ("resolve", "xet-read-token", "tree", "revision") if f"/{k}/" in t),
                        "info" if t.endswith(("{model}", "{dataset}")) else f"`{t}`")
            if name not in out:
                out.append(name)
        return out

    def allows(self, rng: SourceRange, host: str, method: str, path: str) -> bool:
        if not rng.expects_downloads or host not in self.role_of:
            return False
        anything = not rng.models and not rng.datasets
        if anything:        # no allowlist: read methods on the download hosts, any repository
            return method in READ
        role = self.role_of[host]
        if path == "*":     # every path: only where the table itself says any path (content addressed)
            return any(srole == role and method in methods and rx.pattern == "^/.*$"
                       for srole, methods, _s, _k, rx, _t in self.shapes)
        if any(p in path for p in self.ambiguous):
            return False
        listed = {"model": rng.models, "dataset": rng.datasets}
        from stacks.facts import split_allow_entry
        for srole, methods, scoped, kinds, rx, token_route in self.shapes:
            if srole != role or method not in methods:
                continue
            m = rx.match(path)
            if not m:
                continue
            if not scoped:
                return True
            for kind in kinds:
                for entry in listed[kind] or ():
                    repo, rev = split_allow_entry(entry)
                    if m.group("repo") != repo:
                        continue
                    got = m.groupdict().get("rev")
                    if rev is None or got is None or got == rev or token_route:
                        return True
        return False


def extras(model: ProxyModel, found: list[Allowance], ranges: list[SourceRange], expected: Expected) -> list[dict]:
    """Allowed requests the allowlist does not imply: one finding per rule and kind, with an example."""
    by_name = {r.name: r for r in ranges}
    out: dict[tuple[str, str], dict] = {}
    disabled = [r for r in model.rules if not r.allow and not r.applies_to_https()]
    for a in found:
        rng = by_name[a.source]
        if expected.allows(rng, a.host, a.method, a.path):
            continue
        if a.host not in expected.role_of:
            kind = "a host no download needs" if a.host.endswith(("huggingface.co", "hf.co")) else "another host"
        elif a.method not in READ:
            kind = "a write method"
        elif a.path == "*":
            kind = "any path"
        elif any(p in a.path for p in expected.ambiguous):
            kind = "a path a server may normalize into another repository's"
        elif not rng.expects_downloads:
            kind = f"a download from {rng.name}, which lists nothing"
        else:
            kind = "a request the listed downloads never make (another repository or shape)"
        key = (a.address, kind)
        example = f"{a.method} {a.host}{'/<any path>' if a.path == '*' else a.path} from {a.source}"
        if key in out:
            continue
        note = ""
        if disabled and a.path != "*":
            src = None
            skipped = [r.name for r in disabled if evaluate(r.session, Point(src, a.host, a.method, a.path),
                                                            model.lists) is not False
                       and evaluate(r.application, Point(src, a.host, a.method, a.path), model.lists) is not False]
            if skipped:
                note = f"; not denied because {', '.join(skipped)} is disabled or not inspected"
        out[key] = {"address": a.address, "rule": a.rule, "what": f"allows {kind}{note}", "example": example}
    return list(out.values())


def reach_table(found: list[Allowance], ranges: list[SourceRange], expected: Expected) -> list[dict]:
    """Per source range: hosts with the same methods and path shape in one row, as a reviewer reads it."""
    rows = []
    for rng in ranges:
        mine = [a for a in found if a.source == rng.name]
        if not mine:
            rows.append({"source": rng.name, "range": rng.cidr, "hosts": "(none)", "methods": "-",
                         "paths": "everything is denied"})
            continue
        by_host: dict[str, list[Allowance]] = {}
        for a in mine:
            by_host.setdefault(a.host, []).append(a)
        groups: dict[tuple[str, str], list[str]] = {}
        for host, items in sorted(by_host.items()):
            methods = ", ".join(m for m in HTTP_METHODS if any(a.method == m for a in items))
            paths = {a.path for a in items}
            extra = sum(not expected.allows(rng, a.host, a.method, a.path) for a in items)
            if "*" in paths:
                shape = "any path" if paths == {"*"} else "any path but those an earlier rule denies (`..`, encoded separators)"
            else:
                repos = {r.split("@")[0] for r in (rng.models or ()) + (rng.datasets or ())}
                named = sorted(r for r in repos if any(f"/{r}/" in p + "/" for p in paths))
                by_methods: dict[str, list[str]] = {}      # shapes grouped by the methods allowed on them
                for name in expected.shapes_of(host, paths - {"*"}):
                    on = ", ".join(m for m in HTTP_METHODS if any(
                        a.method == m and name in expected.shapes_of(host, {a.path}) for a in items))
                    by_methods.setdefault(on, []).append(name)
                shape = ("; ".join(f"{', '.join(names)} ({on})" for on, names in by_methods.items())
                         or "paths the protocol table does not list")
                if named:
                    shape += " for " + (", ".join(named) if len(named) <= 4 else f"{len(named)} listed repositories")
            if extra:
                shape += f"; **{extra} requests beyond the allowlist** (findings below)"
            groups.setdefault((methods, shape), []).append(host)
        for (methods, shape), hosts in groups.items():
            rows.append({"source": rng.name, "range": rng.cidr, "hosts": ", ".join(hosts), "methods": methods,
                         "paths": shape})
    return rows

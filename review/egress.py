"""The Secure Web Proxy's rules as the plan declares them, and a replay of HTTP requests through them.

The matchers are evaluated by a real CEL engine (cel-python, `celpy`), never by a reader of our own: the plan's
`session_matcher` and `application_matcher` strings are compiled as they are. The proxy's functions are bound as
its CEL matcher reference defines them: `host()` (the CONNECT host), `inUrlList(host, list)` against the plan's URL
lists (an entry without `/` is a domain; `*.x` matches subdomains of x only, `*x` x and its subdomains), and the
request attributes `request.method`, `request.path`, `request.query`, `request.scheme`, `request.headers`,
`request.url()`. Rules are tried in priority order (lower first) and the first whose matchers are all true decides;
a rule with an application matcher sees HTTPS only with TLS inspection on; no match is the proxy's default deny.

Fails closed: a matcher that is not known offline, that does not compile, that calls a function or attribute the
proxy's reference does not define here, or a URL list that cannot be resolved makes the decision UNKNOWN.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from review.plan import Plan, unresolved
from stacks.facts import host_allowed

RULE_TYPE = "google_network_security_gateway_security_policy_rule"
URL_LIST_TYPE = "google_network_security_url_lists"
ALLOW, DENY, UNKNOWN = "allow", "deny", "unknown"


@dataclass(frozen=True)
class Request:
    host: str
    method: str
    path: str
    query: str = ""
    scheme: str = "https"
    note: str = ""
    source_ip: str = ""         # the client's address (a team's jobs come from its subnet); "" when not modelled

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}" + (f"?{self.query}" if self.query else "")

    def show(self) -> str:
        return f"{self.method} {self.host}{self.path}"


@dataclass(frozen=True)
class Rule:
    name: str
    priority: int
    action: str
    session_matcher: str
    application_matcher: str
    tls_inspection: bool
    enabled: bool
    address: str


@dataclass
class Decision:
    request: Request
    action: str                     # allow / deny / unknown
    rule: str                       # the deciding rule's name, "(default deny)", or what was unknown
    why: str = ""
    expect: str | None = None

    @property
    def as_expected(self) -> bool:
        return self.expect is None or self.action == self.expect


@dataclass
class ProxyPolicy:
    rules: list[Rule]
    url_lists: dict[str, list[str]]             # resource name (projects/P/locations/L/urlLists/N) -> entries
    problems: list[str] = field(default_factory=list)
    inspection: bool = False                    # the policy has a TLS inspection policy
    _compiled: dict = field(default_factory=dict, repr=False)    # matcher text -> CEL program (made once)
    _session_cache: dict = field(default_factory=dict, repr=False)   # (matcher, host) -> decision
    _shapes: dict = field(default_factory=dict, repr=False)          # matcher -> its path literals (or False)
    _activation: tuple = field(default=(None, None), repr=False)     # (request, its CEL activation)
    _by_session: dict = field(default_factory=dict, repr=False)      # (host, source) -> rules it may match

    @classmethod
    def from_plan(cls, plan: Plan) -> "ProxyPolicy":
        problems: list[str] = []
        lists: dict[str, list[str]] = {}
        for r in plan.of_type(URL_LIST_TYPE):
            v = plan.resolved(r)
            project = v.get("project") or plan.default_project()
            if unresolved([project, v.get("location"), v.get("name"), v.get("values")]):
                problems.append(f"{r.address}: name or entries not known offline")
                continue
            lists[f"projects/{project}/locations/{v['location']}/urlLists/{v['name']}"] = list(v["values"])
        rules = []
        for r in plan.of_type(RULE_TYPE):
            v = plan.resolved(r)
            fields = [v.get("priority"), v.get("basic_profile"), v.get("session_matcher")]
            if unresolved(fields) or unresolved(v.get("application_matcher") or ""):
                problems.append(f"{r.address}: priority, action or matchers not known offline")
                continue
            rules.append(Rule(v.get("name", r.name), int(v["priority"]), str(v["basic_profile"]).lower(),
                              v["session_matcher"], v.get("application_matcher") or "",
                              bool(v.get("tls_inspection_enabled")), v.get("enabled", True) is not False,
                              r.address))
        rules.sort(key=lambda x: x.priority)
        inspection = any(bool(p.values.get("tls_inspection_policy"))
                         for p in plan.of_type("google_network_security_gateway_security_policy"))
        return cls(rules, lists, problems, inspection)

    # evaluation --------------------------------------------------------------------------------------------------
    def _program(self, expr: str):
        """The matcher compiled and made a program once (cel-python); the proxy's functions read the request being
        decided from `_DECIDING`."""
        import celpy

        if expr not in self._compiled and expr in _PROGRAMS:
            self._compiled[expr] = _PROGRAMS[expr]
        if expr in self._compiled:
            cached = self._compiled[expr]
            if isinstance(cached, _Unknown):
                raise cached
            return cached
        # CompiledRunner: cel-python transpiles the expression to Python once (same CEL semantics, much faster). Its
        # code runs in celpy.evaluation's globals and names bound functions by module: make `review` visible there.
        import celpy.evaluation
        import review
        celpy.evaluation.__dict__.setdefault("review", review)
        env = celpy.Environment(runner_class=celpy.CompiledRunner)
        try:
            ast = env.compile(expr)
        except Exception as exc:     # celpy raises its own CELParseError
            self._compiled[expr] = _Unknown(f"does not compile as CEL: {exc}")
            raise self._compiled[expr] from None

        program = env.program(ast, functions={"host": _host, "inUrlList": _in_url_list, "url": _url,
                                              "inIpRange": _in_ip_range})
        self._compiled[expr] = _PROGRAMS[expr] = program
        return program

    def _matches(self, expr: str, req: Request) -> bool:
        import celpy
        from celpy import celtypes

        # A matcher that reads no request attribute (a session matcher) decides the same for every request to a
        # host: evaluated once per host. Anything that reads `request` is evaluated for each request.
        key = (expr, req.host, req.source_ip) if "request" not in expr else None
        if key is not None and key in self._session_cache:
            return self._session_cache[key]
        program = self._program(expr)
        _DECIDING.policy, _DECIDING.request = self, req
        if self._activation[0] is not req:      # the request as CEL values, made once per request
            self._activation = (req, {"request": celpy.json_to_cel({
                "method": req.method, "path": req.path, "query": req.query, "scheme": req.scheme, "host": req.host,
                "headers": {}}), "source": celpy.json_to_cel({"ip": req.source_ip, "port": 0})})
        try:
            result = program.evaluate(self._activation[1])
        except _Unknown:
            raise
        except Exception as exc:
            raise _Unknown(f"evaluation failed: {type(exc).__name__}: {exc}") from None
        if isinstance(result, celpy.CELEvalError) or not isinstance(result, celtypes.BoolType):
            raise _Unknown(f"did not evaluate to a boolean ({result!r})")
        if key is not None:
            self._session_cache[key] = bool(result)
        return bool(result)

    def _session_rules(self, req: Request) -> list[Rule]:
        """The enabled rules whose session matcher may hold for this host and source, in priority order: a session
        matcher that reads no request attribute decides the same for every request to a host from a source, so it
        is evaluated once per (host, source); one that reads the request, or that could not be evaluated, stays in
        the list and is evaluated (again) per request."""
        key = (req.host, req.source_ip)
        found = self._by_session.get(key)
        if found is None:
            found = []
            for rule in self.rules:
                if not rule.enabled:
                    continue
                if "request" in rule.session_matcher:
                    found.append(rule)
                    continue
                try:
                    if self._matches(rule.session_matcher, req):
                        found.append(rule)
                except _Unknown:
                    found.append(rule)
            self._by_session[key] = found
        return found

    def decide(self, req: Request, expect: str | None = None) -> Decision:
        if self.problems:
            return Decision(req, UNKNOWN, "(plan)", "; ".join(self.problems), expect)
        for rule in self._session_rules(req):
            try:
                if not self._matches(rule.session_matcher, req):
                    continue
                if rule.application_matcher:
                    if req.scheme == "https" and not rule.tls_inspection:
                        continue       # without inspection the proxy cannot see an HTTPS request's attributes
                    if not self._could_match(rule.application_matcher, req):
                        continue
                    if not self._matches(rule.application_matcher, req):
                        continue
            except _Unknown as exc:
                return Decision(req, UNKNOWN, rule.name, str(exc), expect)
            return Decision(req, ALLOW if rule.action == "allow" else DENY, rule.name,
                            f"priority {rule.priority}", expect)
        return Decision(req, DENY, "(default deny)", "no rule matched", expect)


    def _could_match(self, expr: str, req: Request) -> bool:
        """False only when the matcher provably cannot match this path: it is exactly of a form the stacks
        generate (`request.method in [...] && request.path in [...]`, `&& request.path.startsWith(...)`
        alternatives, `request.path.matches(...)`, `request.path.contains(...)` alternatives, or
        `!(request.method in [...])`) and the request's path or method provably makes it false. Anything else is evaluated
        by the CEL engine. This only skips evaluations whose result is known to be false; it keeps the replay of
        hundreds of repositories within seconds (make bench)."""
        shape = self._shapes.get(expr)
        if shape is None:
            shape = self._shapes[expr] = _path_shape(expr)
        if shape is False:
            return True
        kind, literals = shape
        path = req.path
        if kind == "regex":
            return literals.search(path) is not None
        if kind == "contains":
            return any(x in path for x in literals)
        if kind == "not-methods":
            return req.method not in literals
        return path in literals if kind == "exact" else path.startswith(literals)


class _Unknown(Exception):
    pass


# Programs by matcher text, shared by every policy of the process (a review of 20 teams reads the same rules for
# each team's view of the plan): the proxy's functions read the policy and request from `_DECIDING`.
_PROGRAMS: dict = {}


_LIT = r"'(?:[^'\\]|\\.)*'"
_METHODS = r"request\.method in \[(?:'[A-Z]+'(?:, )?)+\] && "
_EXACT = re.compile("^" + _METHODS + r"request\.path in \[((?:" + _LIT + r"(?:, )?)+)\]$")
_PREFIX = re.compile("^" + _METHODS + r"\(?((?:request\.path\.startsWith\(" + _LIT + r"\)(?: \|\| )?)+)\)?$")
_REGEX = re.compile("^(?:" + _METHODS + r")?request\.path\.matches\((" + _LIT + r")\)$")
_CONTAINS = re.compile(r"^\(?((?:request\.path\.contains\(" + _LIT + r"\)(?: \|\| )?)+)\)?$")
_NOT_METHODS = re.compile(r"^!\(request\.method in \[((?:'[A-Z]+'(?:, )?)+)\]\)$")


def _path_shape(expr: str):
    """("exact", frozenset) / ("prefix" or "contains", tuple) / ("regex", compiled) / ("not-methods", frozenset)
    of a generated matcher, or False."""
    m = _REGEX.match(expr)
    if m:
        from review.egress_model.cel import parse
        try:      # the egress model's reader unquotes CEL literals (escapes included)
            term = parse(expr)
            regex = next(a.value for a in ([term] if not isinstance(term, tuple) else term[1])
                         if getattr(a, "kind", "") == "path_regex")
            return ("regex", re.compile(regex))
        except Exception:
            return False
    m = _NOT_METHODS.match(expr)
    if m:
        return ("not-methods", frozenset(re.findall(r"'([A-Z]+)'", m.group(1))))
    for kind, pattern in (("exact", _EXACT), ("prefix", _PREFIX), ("contains", _CONTAINS)):
        m = pattern.match(expr)
        if m:
            from review.egress_model.cel import Unsupported, _unquote
            try:        # CEL's escapes as CEL reads them; one it does not know leaves the matcher to the engine
                literals = [_unquote(x) for x in re.findall(_LIT, m.group(1))]
            except Unsupported:
                return False
            return (kind, frozenset(literals) if kind == "exact" else tuple(literals))
    return False


# The proxy's functions, as its CEL matcher reference defines them, bound to the request being decided. Module-level
# (cel-python's compiled runner calls them by their qualified name); the request is per thread.
_DECIDING = threading.local()


def _host():
    from celpy import celtypes
    return celtypes.StringType(_DECIDING.request.host)


def _in_url_list(h, name):
    from celpy import celtypes
    lists = _DECIDING.policy.url_lists
    if str(name) not in lists:
        raise _Unknown(f"URL list {name} is not in the plan")
    return celtypes.BoolType(host_allowed(str(h), tuple(lists[str(name)])))


def _in_ip_range(ip, cidr):
    """inIpRange(ip, range) of the CEL matcher reference: the address lies in the range (an unknown address,
    "", lies in none)."""
    import ipaddress
    from celpy import celtypes
    try:
        return celtypes.BoolType(ipaddress.ip_address(str(ip)) in ipaddress.ip_network(str(cidr), strict=False))
    except ValueError:
        return celtypes.BoolType(False)


def _url(_request):
    from celpy import celtypes
    return celtypes.StringType(_DECIDING.request.url)


def requests_from_hub_log(entries: list[dict]) -> list[Request]:
    """The local Hub's log (localcloud.hub) as the requests the proxy would see."""
    return [Request(e["host"], e["method"], e["wire_path"]) for e in entries if "wire_path" in e]


def load_traffic(path: Path) -> list[tuple[Request, str | None]]:
    """A traffic file: JSON lines of {"host", "method", "path", "expect"?: "allow"|"deny", "note"?}."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out.append((Request(d["host"], d["method"], d["path"], note=d.get("note", "")), d.get("expect")))
    return out


def replay(policy: ProxyPolicy, traffic: list[tuple[Request, str | None]]) -> list[Decision]:
    return [policy.decide(req, expect) for req, expect in traffic]


def decision_json(d: Decision) -> dict:
    return {**vars(d.request), "action": d.action, "rule": d.rule, "why": d.why, "expect": d.expect,
            "as_expected": d.as_expected}


# Recorded traffic as templates ------------------------------------------------------------------------------------
# The recording (review/traffic/recorded.jsonl, refreshed by tests/test_egress_replay.py with UPDATE_TRAFFIC=1)
# holds what the real trainer and `hf download` asked for, and an upload and an unlisted download, with the repo ids
# replaced by {model}, {dataset}, {unlisted}, revisions and commits by {rev}, and content hashes by {oid}. The review
# instantiates it for every repository the environment lists, as evidence that the synthesized rules allow exactly
# those downloads.
RECORDING = Path(__file__).with_name("traffic") / "recorded.jsonl"
_REV_SEGMENT = re.compile(r"(/(?:resolve|revision|tree|paths-info|xet-read-token)/)(main|[0-9a-f]{40})(?=/|$)")
_OID = re.compile(r"\b[0-9a-f]{64}\b")


def template_of(entry: dict, repos: dict[str, str]) -> str:
    """A recorded request's path with repo ids, revisions and content hashes replaced by placeholders."""
    path = entry["wire_path"]
    for repo, name in sorted(repos.items(), key=lambda x: -len(x[0])):
        path = re.sub("/" + re.escape(repo) + r"(?=/|$)", "/{" + name + "}", path)
    return _OID.sub("{oid}", _REV_SEGMENT.sub(lambda m: m.group(1) + "{rev}", path))


def load_recording(path: Path = RECORDING) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def probes(models: tuple[str, ...], datasets: tuple[str, ...], recording: list[dict]) -> list[tuple[Request, str]]:
    """The recording instantiated for the listed repositories (allow expected) and for an unlisted one and the
    upload (deny expected): all of it for the first model and the first dataset, and for every other one each
    request shape once (the recorded requests that differ only in the file name after `resolve/{rev}/` or
    `tree/{rev}/` take one file): the rules generated per repository are the same for every file, and the egress
    model computes what they allow for every path."""
    from stacks.facts import split_allow_entry
    out: list[tuple[Request, str]] = []
    oid = "0" * 64
    unlisted = "someone-else/unlisted-model"
    seen_shapes: set[tuple] = set()
    for t in recording:
        kinds = [k for k in ("model", "dataset", "unlisted") if f"{{{k}}}" in t["path"]]
        shape = (t["method"], t["host"], re.sub(r"(/(?:resolve|tree)/\{rev\}/).*", r"\1*", t["path"]), t["expect"])
        first_only = shape in seen_shapes
        seen_shapes.add(shape)
        targets: list[tuple[str, str | None]]
        if "model" in kinds:
            targets = [split_allow_entry(m) for m in (models[:1] if first_only else models)]
        elif "dataset" in kinds:
            targets = [(d, None) for d in (datasets[:1] if first_only else datasets)]
        elif "unlisted" in kinds:
            targets = [(unlisted, None)]
        else:
            targets = [("", None)]
        for repo, rev in targets:
            path = (t["path"].replace("{model}", repo).replace("{dataset}", repo).replace("{unlisted}", repo)
                    .replace("{rev}", rev or "main").replace("{oid}", oid))
            out.append((Request(t["host"], t["method"], path, note=t.get("note", "")), t["expect"]))
    # The Xet route of the protocol table (the local Hub's recording has none when Xet is off): the token route for
    # each listed repository, a reconstruction and a xorb range; uploads to the Xet hosts and hosts no download
    # needs are refused.
    from stacks import hub_protocol as hp
    cas, transfer = hp.hosts("xet-cas")[0], hp.hosts("xet-transfer")[0]
    note = "Xet download (stacks/hub_protocol.py)"
    for kind, entries in (("model", models), ("dataset", datasets)):
        for entry in entries:
            repo, rev = split_allow_entry(entry)
            out.append((Request("huggingface.co", "GET", f"/api/{kind}s/{repo}/xet-read-token/{rev or 'main'}",
                                note=note), "allow"))
    if models or datasets:
        out += [(Request(cas, "GET", f"/v2/reconstructions/{oid}", note=note), "allow"),
                (Request(transfer, "GET", f"/xorbs/default/{oid}", note=note), "allow")]
    out += [(Request(cas, "POST", f"/v1/xorbs/default/{oid}", note="Xet upload"), "deny"),
            (Request(hp.NOT_DOWNLOAD_HOSTS[0], "GET", "/rows", query="dataset=someone-else/private-data",
                     note="dataset viewer: any dataset's rows"), "deny"),
            (Request("example.com", "GET", "/", note="another host"), "deny")]
    # Shapes a listed repository's downloads never make: refused although the repository is listed.
    for kind, entries in (("model", models), ("dataset", datasets)):
        for entry in entries:
            repo, rev = split_allow_entry(entry)
            api = f"/api/{kind}s/{repo}"
            out += [(Request("huggingface.co", "GET", f"{api}/discussions", note="a shape downloads never make"),
                     "deny"),
                    (Request("huggingface.co", "POST", f"{api}/preupload/main", note="upload to a listed repo"),
                     "deny")]
            if rev and rev != "main":
                resolve = f"/{repo}/resolve/main/config.json" if kind == "model" else \
                    f"/datasets/{repo}/resolve/main/README.md"
                out.append((Request("huggingface.co", "GET", resolve, note=f"pinned at {rev}: main refused"), "deny"))
    seen, unique = set(), []
    for req, expect in out:
        if (req, expect) not in seen:
            seen.add((req, expect))
            unique.append((req, expect))
    return unique

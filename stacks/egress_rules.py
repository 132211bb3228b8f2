"""The Secure Web Proxy rules of an environment, generated from its allowlist and the Hub's download protocol table
(stacks.hub_protocol: every host and request shape a download needs, each with its source). Pure data (no provider
import): the network construct turns them into resources; the review computes what they allow
(review.egress_model) and replays recorded traffic through them (review.egress).

Read-only everywhere by default, with TLS inspection (the proxy sees methods and paths):

| priority | rule | action |
|---|---|---|
| 100 | any Hugging Face host (`huggingface.co`, `hf.co` and their subdomains): a path with dot segments, `//`, a backslash or an encoded `.`, `/` or `\\` | deny |
| 110 | any Hugging Face host: a method other than GET and HEAD | deny |
| 1000+ | with an allowlist: `huggingface.co`, the listed repositories' request shapes of the table (read methods) | allow |
| 1000 | without one: the table's hosts, read methods, any repository | allow |
| 100000+ | with an allowlist: the content hosts of the table (Xet CAS, transfer, bridge, LFS CDN), their shapes | allow |
| none | everything else: other repositories and shapes, uploads, `datasets-server` and other hosts | deny (default) |

`hub_methods = "any"` (config) drops the write deny and the method terms: the review reports every rule that then
allows a write method as a failing finding unless the reviewer accepts it.

Repositories are packed into few rules so that hundreds fit Secure Web Proxy's limits (its quotas page: 250 rules per
policy, 2,048 characters per matcher; at most 12 logical operators per expression, CEL matcher reference): a rule
matches one regular expression (`request.path.matches`, RE2, no logical operator) that alternates the repositories
of one head (`/api/models/`, `/`, `/datasets/`...) with the table's tails for them. A list that would not fit is
refused at synth (AllowlistTooLarge, exit 2) naming the limit.

Pinned repositories (`org/name@rev`) get their revision in every shape but the Xet token route: the Hub names the
commit there (the refresh route of the HEAD answer), and the token reads the repository's Xet storage by content
hash only, which the pinned tree and resolve shapes are the only way to learn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from stacks import hub_protocol as hp
from stacks.errors import UsageError
from stacks.facts import HF_HUB_HOST, split_allow_entry

READ_METHODS = "request.method in ['GET', 'HEAD']"
WRITE_METHODS = "!(request.method in ['GET', 'HEAD'])"
# Every Hugging Face host, for the deny rules (denying more than the allowed hosts costs nothing).
ALL_HF_HOSTS = ("host() == 'huggingface.co' || host().endsWith('.huggingface.co') || host() == 'hf.co'"
                " || host().endsWith('.hf.co')")
MAX_LOGICAL_OPERATORS = 12          # CEL matcher reference (Japanese edition): at most 12 per expression
MAX_MATCHER_CHARS = 2048            # Secure Web Proxy quotas page: matcher length
MAX_RULES_PER_POLICY = 250          # Secure Web Proxy quotas page: rules per policy
AMBIGUOUS_PATH_PARTS = ("..", "//", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C")
REPO_RULES_FROM = 1000
CONTENT_RULE_PRIORITY = 100000
HUB_METHODS = ("read", "any")


class AllowlistTooLarge(UsageError):
    pass


@dataclass(frozen=True)
class ProxyRule:
    name: str
    priority: int
    action: str                     # "ALLOW" or "DENY"
    session_matcher: str
    application_matcher: str = ""   # needs TLS inspection for HTTPS
    description: str = ""

    @property
    def tls_inspection(self) -> bool:
        return bool(self.application_matcher)


def url_list_id(project_id: str, region: str, name: str) -> str:
    """The url list's resource name, written literally (known at plan time, so the review can evaluate it)."""
    return f"projects/{project_id}/locations/{region}/urlLists/{name}"


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _any(parts: list[str]) -> str:
    return "(" + " || ".join(parts) + ")" if len(parts) > 1 else parts[0]


def _ops(expr: str) -> int:
    return expr.count("&&") + expr.count("||")


def _methods(methods: tuple[str, ...]) -> str:
    return f"request.method in [{', '.join(_q(m) for m in methods)}]"


def _rx(text: str) -> str:
    """A literal for RE2 (repository ids and revisions hold letters, digits, `.`, `_`, `-` and `/`)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _tail_regex(tail: str, rev: str | None, token_route: bool) -> str:
    """A table template's part after the repository, as RE2."""
    out, pos = [], 0
    for m in re.finditer(r"\{(rev|file|hash|anything)\}|\[|\]", tail):
        out.append(_rx(tail[pos:m.start()]))
        t = m.group(0)
        out.append({"[": "(?:", "]": ")?"}.get(t) or {
            "rev": _rx(rev) if rev and not token_route else "[^/]+", "file": ".+", "hash": "[0-9a-f]{64}",
            "anything": ".*"}[m.group(1)])
        pos = m.end()
    out.append(_rx(tail[pos:]))
    return "".join(out)


def repo_groups(models, datasets) -> dict[tuple, list[str]]:
    """(methods, head, tails) -> repository regexes: repositories whose shapes share a head and tails (unpinned ones
    of a kind together, each pinned one with its own revision)."""
    groups: dict[tuple, list[str]] = {}
    for kind, entries in (("model", models), ("dataset", datasets)):
        for entry in entries:
            repo, rev = split_allow_entry(entry)
            by_head: dict[tuple, list[str]] = {}
            for s in hp.shapes("hub", kind):
                head, _, tail = s.path.partition("{" + kind + "}")
                by_head.setdefault((s.methods, head), []).append(
                    _tail_regex(tail, rev, "xet-read-token" in s.path))
            for (methods, head), tails in by_head.items():
                groups.setdefault((methods, head, tuple(tails)), []).append(_rx(repo))
    return groups


def _pack(groups: dict[tuple, list[str]], any_method: bool) -> list[str]:
    """Application matchers within the character limit: `methods && request.path.matches('^HEAD(?:repos)(?:TAILS)$')`."""
    out = []
    for (methods, head, tails), repos in groups.items():
        tail = "(?:" + "|".join(tails) + ")" if len(tails) > 1 else tails[0]
        prefix = "" if any_method else _methods(methods) + " && "

        def build(chunk):
            return f"{prefix}request.path.matches({_q('^' + _rx(head) + '(?:' + '|'.join(chunk) + ')' + tail + '$')})"
        chunk: list[str] = []
        for r in repos:
            if chunk and len(build(chunk + [r])) > MAX_MATCHER_CHARS:
                out.append(build(chunk))
                chunk = []
            chunk.append(r)
        if chunk:
            out.append(build(chunk))
    return out


def _repo_rules(models, datasets, hub: str, name: str, priority: int, who: str = "",
                any_method: bool = False) -> list[ProxyRule]:
    rules = []
    for i, matcher in enumerate(_pack(repo_groups(models, datasets), any_method)):
        rules.append(ProxyRule(f"{name}-{i}", priority, "ALLOW", hub, matcher,
                               f"{who}listed repositories: the download shapes of stacks/hub_protocol.py"))
        priority += 1
    return rules


def _deny_rules(any_method: bool) -> list[ProxyRule]:
    rules = [ProxyRule(
        "deny-ambiguous-paths", 100, "DENY", ALL_HF_HOSTS,
        _any([f"request.path.contains({_q(p)})" for p in AMBIGUOUS_PATH_PARTS]),
        "Paths a server could normalize into another repository's: refused whatever the proxy normalizes")]
    if not any_method:
        rules.append(ProxyRule("deny-write-methods", 110, "DENY", ALL_HF_HOSTS, WRITE_METHODS,
                               "Read-only Hugging Face egress: uploads and every other write refused on every host"))
    return rules


def content_roles() -> dict[tuple, tuple[str, ...]]:
    """(methods, path matcher or "") -> the non-Hub hosts serving exactly those shapes (from the table)."""
    by_role: dict[str, list] = {}
    for s in hp.DOWNLOAD:
        if s.role != "hub":
            by_role.setdefault(s.role, []).append(s)
    groups: dict[tuple, tuple[str, ...]] = {}
    for role, shapes in sorted(by_role.items()):
        methods = tuple(sorted({m for s in shapes for m in s.methods}))
        if any(s.path == "/{anything}" for s in shapes):
            path = ""
        else:
            path = f"request.path.matches({_q('^(?:' + '|'.join(_tail_regex(s.path, None, False) for s in shapes) + ')$')})"
        groups[(methods, path)] = groups.get((methods, path), ()) + hp.hosts(role)
    return groups


def _content_rules(sources: list[str], content_hosts_list: str, any_method: bool) -> list[ProxyRule]:
    """The content hosts, from the given source terms (chunked to fit the operator limit; [""]: any source)."""
    rules, priority = [], CONTENT_RULE_PRIORITY
    for (methods, path), hosts in content_roles().items():
        anyp = not path
        host_term = (f"inUrlList(host(), {_q(content_hosts_list)})" if anyp else
                     _any([f"host() == {_q(h)}" for h in hosts]))
        app = " && ".join(x for x in ("" if any_method else _methods(methods), path) if x)
        room = MAX_LOGICAL_OPERATORS - _ops(host_term) - 1
        chunks = [sources[i:i + room] for i in range(0, len(sources), max(room, 1))]
        for i, chunk in enumerate(chunks):
            src = _any([c for c in chunk if c]) if any(chunk) else ""
            session = f"{src} && {host_term}" if src else host_term
            rules.append(ProxyRule(f"allow-content-{'any-path' if anyp else 'xet-cas'}-{i}", priority, "ALLOW",
                                   session, app or "",
                                   "Hugging Face content hosts (stacks/hub_protocol.py): content addressed by hash"))
            priority += 1
    return rules


def content_url_list_hosts() -> tuple[str, ...]:
    """The hosts of the content URL list: those serving any path (content addressed)."""
    return next((hosts for (_m, path), hosts in content_roles().items() if not path), ())


def proxy_rules(models: tuple[str, ...], datasets: tuple[str, ...], *, all_hosts_list: str,
                content_hosts_list: str, any_method: bool = False, source_cidr: str = "") -> list[ProxyRule]:
    """The rules of an environment without teams; `source_cidr` (the jobs' subnet) limits every allow rule to the
    jobs' own addresses, as a team's rules are limited to its range."""
    rules = _deny_rules(any_method)
    src = f"inIpRange(source.ip, {_q(source_cidr)})" if source_cidr else ""
    if not models and not datasets:
        rules.append(ProxyRule("allow-hugging-face", 1000, "ALLOW",
                               " && ".join(x for x in (src, f"inUrlList(host(), {_q(all_hosts_list)})") if x),
                               "" if any_method else READ_METHODS,
                               "Hugging Face download hosts (stacks/hub_protocol.py): any repository, "
                               + ("any method (hub_methods = \"any\")" if any_method else "read-only")))
        return _checked(rules)
    rules += _repo_rules(models, datasets, " && ".join(x for x in (src, f"host() == {_q(HF_HUB_HOST)}") if x),
                         "allow-repos", REPO_RULES_FROM, any_method=any_method)
    rules += _content_rules([src], content_hosts_list, any_method)
    if len(rules) > MAX_RULES_PER_POLICY:
        raise AllowlistTooLarge(
            f"the allowlist ({len(models)} models, {len(datasets)} datasets) needs {len(rules)} proxy rules;"
            f" Secure Web Proxy allows {MAX_RULES_PER_POLICY} per policy (its quotas page)",
            "list fewer repositories in allow_models / allow_datasets, or split them across environments")
    return _checked(rules)


def _checked(rules: list[ProxyRule]) -> list[ProxyRule]:
    for rule in rules:
        for expr in (rule.session_matcher, rule.application_matcher):
            if _ops(expr) > MAX_LOGICAL_OPERATORS or len(expr) > MAX_MATCHER_CHARS:
                raise AssertionError(f"rule {rule.name} exceeds Secure Web Proxy's matcher limits")
    return rules


TEAM_PRIORITY_STRIDE = 1000     # team i's rules start at REPO_RULES_FROM + i * stride


def team_rules(teams, *, all_hosts_list: str, content_hosts_list: str, any_method: bool = False) -> list[ProxyRule]:
    """One policy for several teams (Secure Web Proxy: 5 gateways, 10 policies per project and region; one shared
    proxy): each team's rules match only its own jobs' source range (`inIpRange(source.ip, ...)`, the team's
    network attachment subnet), so a team reaches its own repositories only. A team without an allowlist may read
    any repository from its range. All teams' rules together must fit one policy's 250."""
    rules = _deny_rules(any_method)
    for i, team in enumerate(sorted(teams, key=lambda t: t.name)):
        source = f"inIpRange(source.ip, {_q(team.subnet_cidr)})"
        start = REPO_RULES_FROM + i * TEAM_PRIORITY_STRIDE
        if not team.allow_models and not team.allow_datasets:
            rules.append(ProxyRule(f"{team.name}-allow-hugging-face", start, "ALLOW",
                                   f"{source} && inUrlList(host(), {_q(all_hosts_list)})",
                                   "" if any_method else READ_METHODS,
                                   f"team {team.name}: the Hugging Face download hosts (no allowlist)"))
            continue
        team_rules_ = _repo_rules(team.allow_models, team.allow_datasets,
                                  f"{source} && host() == {_q(HF_HUB_HOST)}", f"{team.name}-allow-repos", start,
                                  f"team {team.name}: ", any_method)
        if len(team_rules_) >= TEAM_PRIORITY_STRIDE:
            raise AllowlistTooLarge(f"team {team.name} needs {len(team_rules_)} rules", "list fewer repositories")
        rules += team_rules_
    scoped = [t for t in sorted(teams, key=lambda t: t.name) if t.allow_models or t.allow_datasets]
    if scoped:
        rules += _content_rules([f"inIpRange(source.ip, {_q(t.subnet_cidr)})" for t in scoped], content_hosts_list,
                                any_method)
    if len(rules) > MAX_RULES_PER_POLICY:
        per = ", ".join(f"{t.name} {sum(r.name.startswith(t.name + '-') for r in rules)}" for t in teams)
        raise AllowlistTooLarge(
            f"the teams' allowlists need {len(rules)} proxy rules in the environment's one policy ({per});"
            f" Secure Web Proxy allows {MAX_RULES_PER_POLICY} per policy (its quotas page)",
            "list fewer repositories, or move a team to an environment of its own")
    return _checked(rules)

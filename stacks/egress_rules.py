"""The Secure Web Proxy rules of an environment, generated from its allowlist and the one host list in
stacks.facts. Pure data (no provider import): the network construct turns them into resources, and the review
replays recorded traffic through what was synthesized.

With an empty allowlist: one session rule, the Hugging Face hosts (any repository, any method: the review says so).
With an allowlist (TLS inspection on, so the proxy sees methods and paths), each listed repository gets exactly the
request shapes its recorded downloads make (review/traffic/recorded.jsonl: the real `trl sft` and `hf download`),
read methods only:

| shape | unpinned `org/name` | pinned `org/name@rev` |
|---|---|---|
| repository info | `/api/<kind>s/<repo>` | same |
| revision info | `/api/<kind>s/<repo>/revision/` + any revision | `.../revision/<rev>` exactly |
| file tree | `/api/<kind>s/<repo>/tree/` + any | `.../tree/<rev>` and `.../tree/<rev>/...` |
| file download | `/<repo>/resolve/` (datasets: `/datasets/<repo>/resolve/`) + any | `.../resolve/<rev>/...` |

Nothing else under a repository's API prefix (discussions, commits, preupload, paths-info...) is allowed.

Repositories are packed into few rules so that hundreds fit Secure Web Proxy's limits (its quotas page: 250 rules
per policy, 2,048 characters per matcher; at most 12 logical operators per expression, CEL matcher reference):
exact paths go into `request.path in [...]` lists (no logical operator per entry), prefixes into `startsWith`
alternatives, 12 per rule. A list that would not fit is refused at synth (AllowlistTooLarge, exit 2) naming the
limit. Priorities:

| priority | rule | action |
|---|---|---|
| 100 | any Hugging Face host, a path with dot segments, `//`, a backslash or an encoded `.`, `/` or `\\` | deny |
| 1000+ | the Hub (huggingface.co), GET/HEAD, one of the listed shapes above | allow |
| 100000 | the content hosts (`*.hf.co`, `*.huggingface.co`: LFS CDN and xet, content addressed by hash), GET/HEAD | allow |
| none | everything else: other repositories and shapes, uploads, other hosts | deny (default) |
"""
from __future__ import annotations

from dataclasses import dataclass

from stacks.errors import UsageError
from stacks.facts import HF_HUB_HOST, split_allow_entry

READ_METHODS = "request.method in ['GET', 'HEAD']"
MAX_LOGICAL_OPERATORS = 12          # CEL matcher reference (Japanese edition): at most 12 per expression
MAX_MATCHER_CHARS = 2048            # Secure Web Proxy quotas page: matcher length
MAX_RULES_PER_POLICY = 250          # Secure Web Proxy quotas page: rules per policy
AMBIGUOUS_PATH_PARTS = ("..", "//", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C")
REPO_RULES_FROM = 1000
CONTENT_RULE_PRIORITY = 100000


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


def repo_shapes(kind: str, repo: str, rev: str | None) -> tuple[list[str], list[str]]:
    """(exact paths, path prefixes) one repository may be read at: the shapes of its recorded downloads."""
    api = f"/api/{kind}s/{repo}"
    resolve = f"/{repo}/resolve/" if kind == "model" else f"/datasets/{repo}/resolve/"
    if rev is None:
        return [api], [f"{api}/revision/", f"{api}/tree/", resolve]
    return [api, f"{api}/revision/{rev}", f"{api}/tree/{rev}"], [f"{api}/tree/{rev}/", f"{resolve}{rev}/"]


def _ops(expr: str) -> int:
    return expr.count("&&") + expr.count("||")


def _pack_exact(paths: list[str]) -> list[str]:
    """`READ && request.path in [...]` matchers, each within the character limit."""
    out, chunk = [], []
    for p in paths:
        trial = f"{READ_METHODS} && request.path in [{', '.join(_q(x) for x in chunk + [p])}]"
        if chunk and len(trial) > MAX_MATCHER_CHARS:
            out.append(f"{READ_METHODS} && request.path in [{', '.join(_q(x) for x in chunk)}]")
            chunk = []
        chunk.append(p)
    if chunk:
        out.append(f"{READ_METHODS} && request.path in [{', '.join(_q(x) for x in chunk)}]")
    return out


def _pack_prefixes(prefixes: list[str]) -> list[str]:
    """`READ && (startsWith || ...)` matchers within both the operator and the character limits."""
    out, chunk = [], []

    def build(parts):
        return f"{READ_METHODS} && {_any([f'request.path.startsWith({_q(x)})' for x in parts])}"
    for p in prefixes:
        trial = build(chunk + [p])
        if chunk and (_ops(trial) > MAX_LOGICAL_OPERATORS or len(trial) > MAX_MATCHER_CHARS):
            out.append(build(chunk))
            chunk = []
        chunk.append(p)
    if chunk:
        out.append(build(chunk))
    return out


def _repo_rules(models, datasets, hub: str, name: str, priority: int, who: str = "") -> list[ProxyRule]:
    exact: list[str] = []
    prefixes: list[str] = []
    for kind, entries in (("model", models), ("dataset", datasets)):
        for entry in entries:
            repo, rev = split_allow_entry(entry)
            e, p = repo_shapes(kind, repo, rev)
            exact += e
            prefixes += p
    rules = []
    for i, matcher in enumerate(_pack_exact(exact)):
        rules.append(ProxyRule(f"{name}-exact-{i}", priority, "ALLOW", hub, matcher,
                               f"{who}listed repositories: info, pinned revision and tree (exact paths)"))
        priority += 1
    for i, matcher in enumerate(_pack_prefixes(prefixes)):
        rules.append(ProxyRule(f"{name}-prefix-{i}", priority, "ALLOW", hub, matcher,
                               f"{who}listed repositories: revisions, trees and file downloads"))
        priority += 1
    return rules


def _deny_ambiguous(all_hosts_list: str) -> ProxyRule:
    return ProxyRule(
        "deny-ambiguous-paths", 100, "DENY", f"inUrlList(host(), {_q(all_hosts_list)})",
        _any([f"request.path.contains({_q(p)})" for p in AMBIGUOUS_PATH_PARTS]),
        "Paths a server could normalize into another repository's: refused whatever the proxy normalizes")


def proxy_rules(models: tuple[str, ...], datasets: tuple[str, ...], *, all_hosts_list: str,
                content_hosts_list: str) -> list[ProxyRule]:
    if not models and not datasets:
        return [ProxyRule("allow-hugging-face", 1000, "ALLOW", f"inUrlList(host(), {_q(all_hosts_list)})",
                          description="Hugging Face Hub only (no allowlist: any repository, any method)")]
    rules = [_deny_ambiguous(all_hosts_list)]
    rules += _repo_rules(models, datasets, f"host() == {_q(HF_HUB_HOST)}", "allow-repos", REPO_RULES_FROM)
    rules.append(ProxyRule("allow-content-hosts-read", CONTENT_RULE_PRIORITY, "ALLOW",
                           f"inUrlList(host(), {_q(content_hosts_list)})", READ_METHODS,
                           "LFS CDN and xet hosts (content addressed by hash): read methods only"))
    if len(rules) > MAX_RULES_PER_POLICY:
        raise AllowlistTooLarge(
            f"the allowlist ({len(models)} models, {len(datasets)} datasets) needs {len(rules)} proxy rules;"
            f" Secure Web Proxy allows {MAX_RULES_PER_POLICY} per policy (its quotas page)",
            "list fewer repositories in allow_models / allow_datasets (about 900 unpinned repositories fit),"
            " or split them across environments")
    return _checked(rules)


def _checked(rules: list[ProxyRule]) -> list[ProxyRule]:
    for rule in rules:
        for expr in (rule.session_matcher, rule.application_matcher):
            if _ops(expr) > MAX_LOGICAL_OPERATORS or len(expr) > MAX_MATCHER_CHARS:
                raise AssertionError(f"rule {rule.name} exceeds Secure Web Proxy's matcher limits")
    return rules


TEAM_PRIORITY_STRIDE = 1000     # team i's rules start at REPO_RULES_FROM + i * stride


def team_rules(teams, *, all_hosts_list: str, content_hosts_list: str) -> list[ProxyRule]:
    """One policy for several teams (Secure Web Proxy: 5 gateways, 10 policies per project and region; one shared
    proxy): each team's rules match only its own jobs' source range (`inIpRange(source.ip, ...)`, the team's
    network attachment subnet), so a team reaches its own repositories only. A team without an allowlist may reach
    any repository from its range. All teams' rules together must fit one policy's 250."""
    rules = [_deny_ambiguous(all_hosts_list)]
    for i, team in enumerate(sorted(teams, key=lambda t: t.name)):
        source = f"inIpRange(source.ip, {_q(team.subnet_cidr)})"
        start = REPO_RULES_FROM + i * TEAM_PRIORITY_STRIDE
        if not team.allow_models and not team.allow_datasets:
            rules.append(ProxyRule(f"{team.name}-allow-hugging-face", start, "ALLOW",
                                   f"{source} && inUrlList(host(), {_q(all_hosts_list)})",
                                   description=f"team {team.name}: the Hugging Face hosts (no allowlist)"))
            continue
        team_rules_ = _repo_rules(team.allow_models, team.allow_datasets,
                                  f"{source} && host() == {_q(HF_HUB_HOST)}", f"{team.name}-allow-repos", start,
                                  f"team {team.name}: ")
        if len(team_rules_) >= TEAM_PRIORITY_STRIDE:
            raise AllowlistTooLarge(f"team {team.name} needs {len(team_rules_)} rules", "list fewer repositories")
        rules += team_rules_
    ranges = " || ".join(f"inIpRange(source.ip, {_q(t.subnet_cidr)})" for t in sorted(teams, key=lambda t: t.name))
    content = f"inUrlList(host(), {_q(content_hosts_list)})"
    if len(teams) <= MAX_LOGICAL_OPERATORS - 1:
        content = f"({ranges}) && {content}" if len(teams) > 1 else f"{ranges} && {content}"
    rules.append(ProxyRule("allow-content-hosts-read", CONTENT_RULE_PRIORITY, "ALLOW", content, READ_METHODS,
                           "LFS CDN and xet hosts (content addressed by hash), from the teams' ranges: read only"))
    if len(rules) > MAX_RULES_PER_POLICY:
        per = ", ".join(f"{t.name} {sum(r.name.startswith(t.name + '-') for r in rules)}" for t in teams)
        raise AllowlistTooLarge(
            f"the teams' allowlists need {len(rules)} proxy rules in the environment's one policy ({per});"
            f" Secure Web Proxy allows {MAX_RULES_PER_POLICY} per policy (its quotas page)",
            "list fewer repositories, or move a team to an environment of its own")
    return _checked(rules)

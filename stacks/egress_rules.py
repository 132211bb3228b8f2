"""The Secure Web Proxy rules of an environment, generated from its allowlist and the one host list in
stacks.facts. Pure data (no provider import): the network construct turns them into resources, and the review
replays recorded traffic through what was synthesized.

With an empty allowlist: one session rule, the Hugging Face hosts (any repository, any method: the review says so).
With an allowlist (TLS inspection on, so the proxy sees methods and paths):

| priority | rule | action |
|---|---|---|
| 100 | any Hugging Face host, a path with dot segments, `//`, a backslash or an encoded `.`, `/` or `\\` | deny |
| 200+ | the Hub (huggingface.co), read methods, the API and resolve paths of one listed model (its pinned revision only, when pinned) | allow |
| each +1 | the Hub, POST to `paths-info` of that model (what `get_paths_info` and `HfFileSystem` use) | allow |
| 400+ | the same two for each listed dataset | allow |
| 900 | the content hosts (`*.hf.co`, `*.huggingface.co`: LFS CDN and xet, content addressed by hash), read methods | allow |
| none | everything else: other repositories, uploads (`preupload`, `commit`, LFS batch, xet writes), other hosts | deny (default) |

Each expression stays within Secure Web Proxy's limit of 12 logical operators (checked here).
"""
from __future__ import annotations

from dataclasses import dataclass

from stacks.facts import HF_HUB_HOST, split_allow_entry

READ_METHODS = "request.method in ['GET', 'HEAD']"
MAX_LOGICAL_OPERATORS = 12
AMBIGUOUS_PATH_PARTS = ("..", "//", "\\", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C")


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


def _repo_paths(kind: str, repo: str, rev: str | None) -> tuple[list[str], list[str]]:
    """(read-path conditions, POST paths-info conditions) for one repository."""
    api = f"/api/{kind}s/{repo}"
    resolve = f"/{repo}/resolve/" if kind == "model" else f"/datasets/{repo}/resolve/"
    path = "request.path"
    if rev is None:
        reads = [f"{path} == {_q(api)}", f"{path}.startsWith({_q(api + '/')})", f"{path}.startsWith({_q(resolve)})"]
        posts = [f"{path}.startsWith({_q(api + '/paths-info/')})"]
    else:
        reads = [f"{path} == {_q(api)}", f"{path} == {_q(f'{api}/revision/{rev}')}",
                 f"{path} == {_q(f'{api}/tree/{rev}')}", f"{path}.startsWith({_q(f'{api}/tree/{rev}/')})",
                 f"{path} == {_q(f'{api}/xet-read-token/{rev}')}", f"{path}.startsWith({_q(f'{resolve}{rev}/')})"]
        posts = [f"{path} == {_q(f'{api}/paths-info/{rev}')}"]
    return reads, posts


def proxy_rules(models: tuple[str, ...], datasets: tuple[str, ...], *, all_hosts_list: str,
                content_hosts_list: str) -> list[ProxyRule]:
    if not models and not datasets:
        return [ProxyRule("allow-hugging-face", 1000, "ALLOW", f"inUrlList(host(), {_q(all_hosts_list)})",
                          description="Hugging Face Hub only (no allowlist: any repository, any method)")]
    rules = [ProxyRule(
        "deny-ambiguous-paths", 100, "DENY", f"inUrlList(host(), {_q(all_hosts_list)})",
        _any([f"request.path.contains({_q(p)})" for p in AMBIGUOUS_PATH_PARTS]),
        "Paths a server could normalize into another repository's: refused whatever the proxy normalizes")]
    hub = f"host() == {_q(HF_HUB_HOST)}"
    for base, kind, entries in ((200, "model", models), (400, "dataset", datasets)):
        for i, entry in enumerate(entries):
            repo, rev = split_allow_entry(entry)
            reads, posts = _repo_paths(kind, repo, rev)
            pin = f" at {rev}" if rev else ""
            rules.append(ProxyRule(f"allow-{kind}-{i}-read", base + 2 * i, "ALLOW", hub,
                                   f"{READ_METHODS} && {_any(reads)}", f"read {kind} {repo}{pin}"))
            rules.append(ProxyRule(f"allow-{kind}-{i}-paths-info", base + 2 * i + 1, "ALLOW", hub,
                                   f"request.method == 'POST' && {_any(posts)}", f"paths-info of {kind} {repo}{pin}"))
    rules.append(ProxyRule("allow-content-hosts-read", 900, "ALLOW", f"inUrlList(host(), {_q(content_hosts_list)})",
                           READ_METHODS, "LFS CDN and xet hosts (content addressed by hash): read methods only"))
    for rule in rules:
        for expr in (rule.session_matcher, rule.application_matcher):
            ops = expr.count("&&") + expr.count("||")
            if ops > MAX_LOGICAL_OPERATORS:
                raise ValueError(f"rule {rule.name} has {ops} logical operators; Secure Web Proxy allows "
                                 f"{MAX_LOGICAL_OPERATORS}")
    return rules

"""What a training job can reach, computed from every resource that routes its packets (the review's one answer to
"where can a job's packets go"; review/report.py renders it, the replay in review/egress.py is the second check).

- `proxy`: what the Secure Web Proxy rules allow per source range (each team's subnet, the platform's other
  subnets, anything else), computed symbolically for the CEL subset the stacks emit (`cel`), against what the
  allowlist implies (stacks.hub_protocol's DOWNLOAD rows for the listed repositories);
- `network`: classic VPC firewall rules and network firewall policies in Google's evaluation order, routes, Cloud NAT,
  peering, Private Service Connect endpoints and network attachments;
- `perimeter`: the VPC Service Controls perimeter's real state (enforced or dry-run), its restricted services and
  egress policies;
- `known`: default deny: an egress-relevant type or argument the model does not read is UNKNOWN.

Every finding names the resource (and rule) that opens the path and one example; it fails the review unless the
reviewer accepts it (`[[egress]] address = "...", reason = "..."` in the accept file).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from review.egress_model import known, network, perimeter, proxy
from review.plan import Plan, team_source_range, team_views

ANYTHING_ELSE = "anything else"
PLATFORM = "platform"


@dataclass
class EgressModel:
    mode: str
    enforced: bool
    perimeter_state: str
    contract_says: object
    sources: list[dict] = field(default_factory=list)     # name, range
    reach: list[dict] = field(default_factory=list)       # the reviewer's table
    firewall: dict = field(default_factory=dict)          # source name -> destinations the firewall lets through
    findings: list[dict] = field(default_factory=list)
    unknowns: list[dict] = field(default_factory=list)

    def to_json(self, accepts: list[dict] | None = None) -> dict:
        accepted = {a["address"]: a["reason"] for a in accepts or []}
        findings = [f | {"accepted": accepted.get(f["address"])} for f in self.findings]
        unknowns = [u | {"accepted": accepted.get(u["address"])} for u in self.unknowns]
        return {"mode": self.mode, "enforced": self.enforced, "perimeter": self.perimeter_state,
                "contract_egress_enforced": self.contract_says, "sources": self.sources, "reach": self.reach,
                "firewall": self.firewall, "findings": findings, "unknowns": unknowns,
                "ok": not any(x["accepted"] is None for x in findings + unknowns)}


def _sources(plan: Plan) -> list[proxy.SourceRange]:
    views = team_views(plan)
    out, named = [], []
    for name, view in views.items():
        cidr = team_source_range(view)
        if not cidr:
            continue
        net = ipaddress.ip_network(cidr, strict=False)
        named.append(net)
        out.append(proxy.SourceRange(f"team {name}" if name else "jobs", [net],
                                     tuple(view.output("allowed_models") or ()),
                                     tuple(view.output("allowed_datasets") or ()), cidr))
    platform: list = []
    for r in plan.of_type("google_compute_subnetwork"):
        v = plan.resolved(r)
        secondary = v.get("secondary_ip_range") or []
        secondary = [secondary] if isinstance(secondary, dict) else secondary
        for cidr in [v.get("ip_cidr_range")] + [x.get("ip_cidr_range") for x in secondary if isinstance(x, dict)]:
            try:
                net = ipaddress.ip_network(str(cidr or ""), strict=False)
            except ValueError:
                continue
            if net.version == 4 and not any(net.overlaps(n) for n in named):
                platform.append(net)
    platform = list(ipaddress.collapse_addresses(platform))
    if platform:
        out.append(proxy.SourceRange(PLATFORM, platform, None, None, ", ".join(map(str, platform))))
    rest: list = [network.ANY4]
    for n in named + platform:
        nxt: list = []
        for p in rest:
            if p.subnet_of(n):
                continue
            nxt += list(p.address_exclude(n)) if n.subnet_of(p) else [p]
        rest = nxt
    out.append(proxy.SourceRange(ANYTHING_ELSE, rest, None, None, "any other address"))
    return out


def build(plan: Plan) -> EgressModel:
    from review.policies import egress_mode
    from stacks import hub_protocol as hp
    from stacks.egress_rules import AMBIGUOUS_PATH_PARTS
    mode = egress_mode(plan)
    per = perimeter.read(plan)
    claim: object = plan.output("egress_enforced")
    if claim is None:       # with teams, every team's contract carries it
        claims = {v.output("egress_enforced") for v in team_views(plan).values()} - {None}
        claim = claims.pop() if len(claims) == 1 else (True if True in claims else None)
    enforced = mode == "proxy" and per.egress_enforced
    model = EgressModel(mode, enforced, per.state(), claim)
    model.findings += per.findings
    model.unknowns += per.unknowns
    if claim is True and not enforced:
        model.findings.append({"address": per.address or "output.egress_enforced", "rule": "egress_enforced",
                               "what": f"the outputs contract says egress is enforced, but the perimeter is"
                                       f" {per.state()}: jobs keep Google-managed internet egress",
                               "example": "a job's code ignoring HTTPS_PROXY"})
    for r in plan.resources:
        for why in known.unknown_parts(r.type, r.values):
            model.unknowns.append({"address": r.address, "field": "type" if "argument" not in why else
                                   why.split()[1], "why": why})
    gateway = next((plan.resolved(g) for g in plan.of_type("google_network_services_gateway")), {})
    proxy_address = next(iter(gateway.get("addresses") or []), None)
    sources = _sources(plan)
    model.sources = [{"name": s.name, "range": s.cidr} for s in sources]
    net = network.read(plan)
    model.unknowns += net.unknowns
    if mode == "proxy":
        reps: list = [(s.name, next(iter(proxy.source_pieces(proxy.ProxyModel([], {}), [s])))[1]) for s in sources]
        network.firewall_reach(net, reps, proxy_address)
        model.firewall = net.reach
        _attachments(plan, model)
        pm = proxy.read_rules(plan)
        model.unknowns += pm.unknowns
        model.findings += pm.findings
        expected = proxy.Expected(AMBIGUOUS_PATH_PARTS)
        if not pm.unknowns:
            found = proxy.allowances(pm, sources, hp.hosts(), hp.NOT_DOWNLOAD_HOSTS, AMBIGUOUS_PATH_PARTS)
            model.findings += proxy.extras(pm, found, sources, expected)
            model.reach = proxy.reach_table(found, sources, expected)
        else:
            model.reach = [{"source": s.name, "range": s.cidr, "hosts": "(unknown)", "methods": "-",
                            "paths": "the proxy rules could not be read (UNKNOWN below)"} for s in sources]
    else:
        model.reach = [{"source": "jobs", "range": "Google-managed egress (open mode: no VPC of ours)",
                        "hosts": "anything", "methods": "any", "paths": "any (the allowlist is checked at submit only)"}]
    model.findings += net.findings
    seen, unique = set(), []
    for f in model.findings:
        key = (f["address"], f["what"])
        if key not in seen:
            seen.add(key)
            unique.append(f)
    model.findings = unique
    return model


def _attachments(plan: Plan, model: EgressModel) -> None:
    """Network attachments the outputs contract does not name let another producer's workloads into the VPC."""
    named = set()
    for view in team_views(plan).values():
        ref = str((view.outputs.get("network_attachment") or {}).get("value") or "")
        m = re.search(r"google_compute_network_attachment\.([^.}]+)\.", ref)
        if m:
            named.add(m.group(1))
    for r in plan.of_type("google_compute_network_attachment"):
        if named and r.name not in named:
            model.findings.append({"address": r.address, "rule": r.name,
                                   "what": "a network attachment the outputs contract does not name: producers"
                                           " attached there reach the VPC from a range no allowlist covers",
                                   "example": ""})

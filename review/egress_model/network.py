"""Where a job's packets can go below the proxy: firewalls in Google's evaluation order, routes, NAT, peering, Private
Service Connect endpoints and network attachments. Addresses are CIDR arithmetic (`ipaddress`), never strings.

Evaluation order ("Network firewall policies", "Policy and rule evaluation order"): with the network's
`network_firewall_policy_enforcement_order` AFTER_CLASSIC_FIREWALL (the default) the classic VPC firewall rules are
evaluated before the network firewall policy; BEFORE_CLASSIC_FIREWALL the other way round. Within each, the rule of
the lowest priority number that matches decides (a deny wins a tie; a policy rule may `goto_next`); when nothing
matches, the implied rule allows egress ("VPC firewall rules", implied rules). A rule aimed at tags or service
accounts is counted as applying when it allows and as not applying when it denies: the model over-approximates what
passes.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from review.plan import Plan, unresolved

ANY4 = ipaddress.ip_network("0.0.0.0/0")


def networks(values) -> tuple[list, list[str]]:
    """(ip_networks, values that are not address ranges)."""
    out, bad = [], []
    for v in values or []:
        try:
            out.append(ipaddress.ip_network(str(v), strict=False))
        except ValueError:
            bad.append(str(v))
    return out, bad


# Addresses that are not the internet (RFC 6890 special-purpose registry: private, shared, loopback, link-local,
# multicast, reserved; Google's private ranges for PSC and proxies are among the private ones).
NOT_INTERNET = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"))


def public_part(nets: list) -> list:
    """The internet addresses among `nets`, collapsed: 0.0.0.0/1 + 128.0.0.0/1 is the internet."""
    out = []
    for n in ipaddress.collapse_addresses([x for x in nets if x.version == 4]):
        parts = [n]
        for x in NOT_INTERNET:
            nxt = []
            for p in parts:
                if p.subnet_of(x):
                    continue
                nxt += list(p.address_exclude(x)) if x.subnet_of(p) else [p]
            parts = nxt
        out += parts
    return list(ipaddress.collapse_addresses(out))


@dataclass
class FwRule:
    address: str
    layer: str                  # "classic" or "policy"
    priority: int
    action: str                 # allow / deny / goto_next
    dest: list
    src: list                   # [] = any source
    protocols: list             # [(protocol, ports)]; ("all", []) for everything
    targeted: bool


@dataclass
class NetworkModel:
    unknowns: list[dict] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    rules: list[FwRule] = field(default_factory=list)
    order: str = "AFTER_CLASSIC_FIREWALL"
    subnets: dict[str, str] = field(default_factory=dict)      # address -> cidr
    reach: dict[str, list[str]] = field(default_factory=dict)  # source name -> what the firewall lets through


# Firewall rules take a protocol by name or by its IANA number ("VPC firewall rules", protocols and ports): the
# numbers of the protocols the model probes read as their names.
IP_PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp"}


def _l4(configs, protocol_key: str, ports_key: str = "ports") -> list[tuple[str, list[str]]]:
    out = []
    for c in configs or []:
        if isinstance(c, dict):
            proto = str(c.get(protocol_key, "all")).lower()
            proto = IP_PROTOCOL_NUMBERS.get(proto, proto)
            out.append((proto, [str(p) for p in c.get(ports_key) or []]))
    return out or [("all", [])]


def read(plan: Plan) -> NetworkModel:
    m = NetworkModel()
    for r in plan.of_type("google_compute_network"):
        v = plan.resolved(r)
        m.order = str(v.get("network_firewall_policy_enforcement_order") or "AFTER_CLASSIC_FIREWALL")
    for r in plan.of_type("google_compute_subnetwork"):
        v = plan.resolved(r)
        m.subnets[r.address] = str(v.get("ip_cidr_range", ""))
        if str(v.get("ipv6_access_type", "")).upper() == "EXTERNAL":
            m.findings.append({"address": r.address, "rule": r.name, "what": "external IPv6 on a subnet: its"
                               " workloads reach the internet over IPv6, around the proxy", "example": ""})
    for r in plan.of_type("google_compute_firewall"):
        v = plan.resolved(r)
        if str(v.get("direction", "INGRESS")).upper() != "EGRESS" or v.get("disabled") is True:
            continue
        fields = [v.get("priority", 1000), v.get("destination_ranges", ["0.0.0.0/0"]), v.get("allow"), v.get("deny")]
        if unresolved([x for x in fields if x is not None]):
            m.unknowns.append({"address": r.address, "field": "priority/ranges/allow/deny",
                               "why": "not known offline: cannot tell what the rule lets out"})
            continue
        dest, bad = networks(v.get("destination_ranges") or ["0.0.0.0/0"])
        src, bad2 = networks(v.get("source_ranges") or [])
        if bad or bad2:
            m.unknowns.append({"address": r.address, "field": "ranges", "why": f"not address ranges: {bad + bad2}"})
            continue
        allow, deny = v.get("allow") or [], v.get("deny") or []
        m.rules.append(FwRule(r.address, "classic", int(v.get("priority", 1000)), "allow" if allow else "deny",
                              dest, src, _l4(allow or deny, "protocol"),
                              bool(v.get("target_tags") or v.get("target_service_accounts"))))
    associated = set()      # names of the policies attached to a network of the plan (by reference or by name)
    own_networks = {r.name for r in plan.of_type("google_compute_network")}
    own_names = {str(plan.resolved(r).get("name")) for r in plan.of_type("google_compute_network")}
    for a in plan.of_type("google_compute_network_firewall_policy_association"):
        target_raw = str(a.values.get("attachment_target", ""))
        ref_net = re.search(r"google_compute_network\.([^.}]+)\.", target_raw)
        if ref_net is None and unresolved(target_raw):
            m.unknowns.append({"address": a.address, "field": "attachment_target",
                               "why": "not known offline: cannot tell which network the policy governs"})
            continue
        if (ref_net.group(1) not in own_networks) if ref_net else (target_raw.rsplit("/", 1)[-1] not in own_names):
            continue        # attached to a network outside the plan: it governs none of the jobs' packets
        raw = str(a.values.get("firewall_policy", ""))
        ref = re.search(r"google_compute_network_firewall_policy\.([^.}]+)\.", raw)
        target = plan.get("google_compute_network_firewall_policy", ref.group(1)) if ref else None
        associated.add(str(plan.resolved(target).get("name")) if target else str(plan.resolved(a).get(
            "firewall_policy", "")).rsplit("/", 1)[-1])
    for r in plan.of_type("google_compute_network_firewall_policy_rule"):
        v = plan.resolved(r)
        if str(v.get("direction", "")).upper() != "EGRESS" or v.get("disabled") is True:
            continue
        match = v.get("match") or {}
        match = match[0] if isinstance(match, list) and match else match
        if not isinstance(match, dict) or unresolved([v.get("priority"), v.get("action"), match.get("dest_ip_ranges")
                                                      or []]):
            m.unknowns.append({"address": r.address, "field": "match/priority/action",
                               "why": "not known offline: cannot tell what the rule lets out"})
            continue
        other = sorted(k for k, x in match.items() if x not in (None, [], "") and k not in
                       ("dest_ip_ranges", "src_ip_ranges", "layer4_configs"))
        if other:
            m.unknowns.append({"address": r.address, "field": "match." + ",".join(other),
                               "why": "a match the egress model does not read (FQDNs, address groups, regions,"
                                      " threat intelligence lists, secure tags): cannot tell what it lets out"})
            continue
        action = str(v.get("action", "")).lower()
        if action not in ("allow", "deny", "goto_next"):
            m.unknowns.append({"address": r.address, "field": "action", "why": f"action {action!r} is not read"})
            continue
        dest, bad = networks(match.get("dest_ip_ranges") or ["0.0.0.0/0"])
        src, bad2 = networks(match.get("src_ip_ranges") or [])
        if bad or bad2:
            m.unknowns.append({"address": r.address, "field": "match", "why": f"not address ranges: {bad + bad2}"})
            continue
        policy = str(v.get("firewall_policy", "")).rsplit("/", 1)[-1]
        if policy not in associated and not unresolved(policy):
            continue        # a policy attached to no network governs nothing
        m.rules.append(FwRule(r.address, "policy", int(v["priority"]), action, dest, src,
                              _l4(match.get("layer4_configs"), "ip_protocol"),
                              bool(v.get("target_service_accounts") or v.get("target_secure_tags"))))
    _routes(plan, m)
    _nat(plan, m)
    _peering_and_psc(plan, m)
    return m


def _routes(plan: Plan, m: NetworkModel) -> None:
    for r in plan.of_type("google_compute_route"):
        v = plan.resolved(r)
        hop = next((k for k in ("next_hop_gateway", "next_hop_ip", "next_hop_instance", "next_hop_ilb",
                                "next_hop_vpn_tunnel") if v.get(k)), "")
        dest, bad = networks([v.get("dest_range")])
        if bad or unresolved(v.get(hop)):
            m.unknowns.append({"address": r.address, "field": "dest_range/next hop", "why": "not known offline"})
            continue
        if hop == "next_hop_gateway" and "default-internet-gateway" in str(v.get(hop)):
            # What the network's default route already does: a job's interface has no external address, so the
            # packets leave only through a NAT (judged below) — e.g. the restricted VIP's route for VPC-SC.
            continue
        m.findings.append({"address": r.address, "rule": r.name,
                           "what": f"routes {dest[0]} to {hop.removeprefix('next_hop_')} {v.get(hop)}: whatever is"
                                   " there can forward jobs' packets anywhere, around the proxy",
                           "example": f"a packet to {next(iter(dest[0].hosts()), dest[0].network_address)}"})


def _nat(plan: Plan, m: NetworkModel) -> None:
    for r in plan.of_type("google_compute_router_nat"):
        v = plan.resolved(r)
        endpoints = [str(x) for x in v.get("endpoint_types") or []]
        if endpoints and all(e == "ENDPOINT_TYPE_SWG" for e in endpoints):
            continue        # the proxy's own NAT: only the proxy's connections use it
        scope = str(v.get("source_subnetwork_ip_ranges_to_nat", ""))
        subnets = v.get("subnetwork") or []
        subnets = [subnets] if isinstance(subnets, dict) else subnets
        named = [str(s.get("name", "")) for s in subnets if isinstance(s, dict)]
        which = ("every subnet" if scope.startswith("ALL_SUBNETWORKS") else
                 ", ".join(named) or "the listed subnets")
        m.findings.append({"address": r.address, "rule": r.name,
                           "what": f"Cloud NAT for {which}: workloads there reach the internet without the proxy"
                                   " wherever the firewall lets them", "example": "a connection to any internet host"})


def _peering_and_psc(plan: Plan, m: NetworkModel) -> None:
    for r in plan.of_type("google_compute_network_peering"):
        v = plan.resolved(r)
        m.findings.append({"address": r.address, "rule": r.name,
                           "what": f"peers the network with {v.get('peer_network')}: jobs' packets reach that network"
                                   " (and what it routes) around the proxy", "example": ""})
    for r in plan.of_type("google_compute_forwarding_rule", "google_compute_global_forwarding_rule"):
        v = plan.resolved(r)
        target = str(v.get("target", ""))
        if target == "vpc-sc":
            continue        # the restricted VIP: only VPC-SC supported services, inside the perimeter
        kind = ("a Private Service Connect endpoint to " + ("every Google API (all-apis)" if target == "all-apis" else
                                                              f"the service attachment {target}")
                if target and not v.get("load_balancing_scheme") else f"a forwarding rule (target {target or '-'})")
        m.findings.append({"address": r.address, "rule": r.name,
                           "what": f"{kind}: jobs reach it from the VPC around the proxy", "example": ""})


# Firewall decision ----------------------------------------------------------------------------------------------------
def _matches(rule: FwRule, src, dest_net, proto: str, port: int | None) -> bool:
    if rule.src and not any(src in s for s in rule.src):
        return False
    if not any(dest_net.subnet_of(d) for d in rule.dest if d.version == dest_net.version):
        return False
    for p, ports in rule.protocols:
        if p not in ("all", proto):
            continue
        if not ports or port is None:
            return True
        for spec in ports:
            lo, _, hi = spec.partition("-")
            if int(lo) <= port <= int(hi or lo):
                return True
    return False


def decide(m: NetworkModel, src, dest_net, proto: str, port: int | None) -> tuple[bool, str]:
    """(allowed, deciding rule's address or "implied allow egress")."""
    classic = sorted((r for r in m.rules if r.layer == "classic"), key=lambda r: (r.priority, r.action != "deny"))
    policy = sorted((r for r in m.rules if r.layer == "policy"), key=lambda r: (r.priority, r.action != "deny"))
    layers = [classic, policy] if m.order != "BEFORE_CLASSIC_FIREWALL" else [policy, classic]
    for layer in layers:
        for r in layer:
            if r.targeted and r.action == "deny":
                continue
            if _matches(r, src, dest_net, proto, port):
                if r.action == "goto_next":
                    break
                return r.action == "allow", r.address
    return True, "implied allow egress"


def firewall_reach(m: NetworkModel, sources: list[tuple[str, object]], proxy: str | None) -> None:
    """Per source: the destinations the firewall lets through, and a finding for each rule letting jobs reach the
    internet (the union of what it allows, however it is written)."""
    cuts = {d for r in m.rules for d in r.dest if d.version == 4} | {ANY4}
    pieces: list = [ANY4]
    for c in cuts:
        nxt: list = []
        for p in pieces:
            if p.subnet_of(c) or not p.overlaps(c):
                nxt.append(p)
            else:
                nxt += list(p.address_exclude(c)) + [c]
        pieces = nxt
    port_reps: set[int] = {443, 80, 53, 1}
    for r in m.rules:
        for _p, ports in r.protocols:
            for spec in ports:
                lo, _, hi = spec.partition("-")
                port_reps |= {int(lo), int(hi or lo)}
    # Every protocol a rule names is probed too (SCTP, ESP, GRE, ICMP... carry packets out as well as TCP does).
    protos = ["tcp", "udp"] + sorted({p for r in m.rules for p, _ in r.protocols} - {"tcp", "udp", "all"})
    for name, src in sources:
        allowed: dict[str, list] = {}
        for piece in pieces:
            for proto in protos:
                for port in sorted(port_reps):
                    ok, by = decide(m, src, piece, proto, port)
                    if ok:
                        allowed.setdefault(by, []).append(piece)
                        break
        lines = []
        for by, nets in allowed.items():
            nets = list(ipaddress.collapse_addresses(nets))
            public = public_part(nets)
            proxy_only = proxy and all(n.num_addresses == 1 and str(n.network_address) == proxy for n in nets)
            rule = next((r for r in m.rules if r.address == by), None)
            ports = ", ".join(f"{p}:{','.join(ps)}" if ps else p for p, ps in rule.protocols) if rule else "any"
            lines.append(f"{', '.join(map(str, nets[:4]))}{' ...' if len(nets) > 4 else ''} {ports}"
                         f" ({by.rsplit('.', 1)[-1]})")
            if public and not proxy_only:
                m.findings.append({"address": by, "rule": by.rsplit(".", 1)[-1],
                                   "what": f"the firewall lets {name} reach internet addresses"
                                           f" ({', '.join(map(str, public[:3]))}{' ...' if len(public) > 3 else ''}):"
                                           " egress around the proxy",
                                   "example": f"tcp to {next(iter(public[0].hosts()), public[0].network_address)}"})
        m.reach[name] = lines or ["nothing"]

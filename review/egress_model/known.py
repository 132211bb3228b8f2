"""Default deny over the resources that decide where a job's packets go.

A resource of an egress-relevant family (`EGRESS_FAMILIES`) is either modelled (the model reads the arguments listed
for its type and judges them), harmless (a row below, with why it moves no packet), or UNKNOWN: the review fails on
it until a row is added or the reviewer accepts it. The same holds for an argument of a modelled type that the model
does not read and no row calls harmless. Every row is tested (tests/test_egress_review.py).
"""
from __future__ import annotations

EGRESS_FAMILIES = ("google_compute_", "google_network_security_", "google_network_services_",
                   "google_network_connectivity_", "google_access_context_manager_", "google_dns_",
                   "google_vpc_access_", "google_service_networking_", "google_privateca_")

# Arguments of any resource that route nothing: Terraform's meta-arguments and naming/placement.
META_ARGS = frozenset({"//", "depends_on", "lifecycle", "provider", "count", "for_each", "timeouts", "project",
                       "name", "description", "labels", "region", "location", "deletion_protection", "title"})

# type -> arguments the model reads (and judges).
MODELLED: dict[str, frozenset] = {
    "google_compute_network": frozenset({"auto_create_subnetworks", "routing_mode", "delete_default_routes_on_create",
                                         "network_firewall_policy_enforcement_order"}),
    "google_compute_subnetwork": frozenset({"ip_cidr_range", "network", "purpose", "role", "secondary_ip_range",
                                            "stack_type", "ipv6_access_type"}),
    "google_compute_firewall": frozenset({"network", "direction", "priority", "allow", "deny", "destination_ranges",
                                          "source_ranges", "disabled", "target_tags", "target_service_accounts",
                                          "source_tags", "source_service_accounts"}),
    "google_compute_network_firewall_policy_rule": frozenset({"firewall_policy", "rule_name", "action", "direction",
                                                              "priority", "match", "disabled",
                                                              "target_service_accounts", "target_secure_tags"}),
    "google_compute_network_firewall_policy_association": frozenset({"attachment_target", "firewall_policy"}),
    "google_compute_route": frozenset({"network", "dest_range", "priority", "tags", "next_hop_gateway",
                                       "next_hop_ip", "next_hop_instance", "next_hop_instance_zone", "next_hop_ilb",
                                       "next_hop_vpn_tunnel"}),
    "google_compute_router_nat": frozenset({"router", "source_subnetwork_ip_ranges_to_nat", "subnetwork",
                                            "endpoint_types", "nat_ip_allocate_option", "nat_ips"}),
    "google_compute_network_peering": frozenset({"network", "peer_network", "export_custom_routes",
                                                 "import_custom_routes"}),
    "google_compute_forwarding_rule": frozenset({"network", "target", "ip_address", "load_balancing_scheme"}),
    "google_compute_global_forwarding_rule": frozenset({"network", "target", "ip_address", "load_balancing_scheme"}),
    "google_compute_network_attachment": frozenset({"subnetworks", "connection_preference"}),
    "google_network_services_gateway": frozenset({"type", "addresses", "ports", "routing_mode", "network",
                                                  "subnetwork", "gateway_security_policy"}),
    "google_network_security_gateway_security_policy": frozenset({"tls_inspection_policy"}),
    "google_network_security_gateway_security_policy_rule": frozenset({"gateway_security_policy", "priority",
                                                                       "basic_profile", "enabled", "session_matcher",
                                                                       "application_matcher",
                                                                       "tls_inspection_enabled"}),
    "google_network_security_url_lists": frozenset({"values"}),
    "google_access_context_manager_service_perimeter": frozenset({"parent", "perimeter_type", "status", "spec",
                                                                  "use_explicit_dry_run_spec"}),
    "google_access_context_manager_service_perimeter_resource": frozenset({"perimeter_name", "resource"}),
    "google_access_context_manager_service_perimeter_egress_policy": frozenset({"perimeter", "egress_from",
                                                                                "egress_to"}),
    "google_access_context_manager_service_perimeter_dry_run_egress_policy": frozenset({"perimeter", "egress_from",
                                                                                        "egress_to"}),
    "google_access_context_manager_service_perimeter_ingress_policy": frozenset({"perimeter", "ingress_from",
                                                                                 "ingress_to"}),
}

# (type, argument or "" for the whole type) -> (why it moves no packet, an example value for the test)
HARMLESS: dict[tuple[str, str], tuple[str, object]] = {
    ("google_compute_router", ""): (
        "a Cloud Router alone forwards nothing: NAT, VPN and interconnect attachments on it are what route, and"
        " google_compute_router_nat is modelled", {"network": "x"}),
    ("google_compute_network_firewall_policy", ""): (
        "a container: its rules (modelled) and its association to a network (modelled) decide", {}),
    ("google_compute_address", ""): (
        "reserving an address routes nothing; a forwarding rule or NAT that uses it is modelled",
        {"address_type": "INTERNAL"}),
    ("google_compute_global_address", ""): (
        "reserving an address routes nothing; a forwarding rule or NAT that uses it is modelled",
        {"purpose": "PRIVATE_SERVICE_CONNECT"}),
    ("google_compute_shared_vpc_host_project", ""): (
        "makes the project a Shared VPC host: service projects then use its subnets, which the same firewall,"
        " routes and proxy govern", {}),
    ("google_compute_shared_vpc_service_project", ""): (
        "lets a project use the host's subnets: its workloads are governed by the host network's firewall, routes"
        " and proxy", {"service_project": "x"}),
    ("google_compute_subnetwork_iam_member", ""): (
        "IAM: who may use a subnet (the identity review judges IAM); it routes nothing", {"role": "x"}),
    ("google_compute_subnetwork_iam_binding", ""): (
        "IAM: who may use a subnet (the identity review judges IAM); it routes nothing", {"role": "x"}),
    ("google_network_security_tls_inspection_policy", ""): (
        "which CA the proxy signs with (HFG011 judges who may issue from it); rules decide what passes",
        {"ca_pool": "x"}),
    ("google_privateca_ca_pool", ""): ("the inspection CA's pool: certificates, not packets (HFG011)", {}),
    ("google_privateca_certificate_authority", ""): ("the inspection CA: certificates, not packets (HFG011)", {}),
    ("google_privateca_ca_pool_iam_member", ""): ("IAM on the CA pool (HFG011 judges issuers)", {}),
    ("google_access_context_manager_access_level", ""): (
        "describes callers; it admits nothing unless an ingress policy names it (modelled there)", {}),
    ("google_compute_subnetwork", "log_config"): ("flow logs: records packets, routes none", {"metadata": "x"}),
    ("google_compute_subnetwork", "private_ip_google_access"): (
        "reaches Google APIs only, which the perimeter governs (Vertex jobs' API calls never enter this VPC)", True),
    ("google_compute_subnetwork", "private_ipv6_google_access"): ("as private_ip_google_access, over IPv6",
                                                                   "DISABLE_GOOGLE_ACCESS"),
    ("google_compute_firewall", "log_config"): ("logging of the rule's matches", {"metadata": "INCLUDE_ALL_METADATA"}),
    ("google_compute_firewall", "enable_logging"): ("logging of the rule's matches", True),
    ("google_compute_network_firewall_policy_rule", "enable_logging"): ("logging of the rule's matches", True),
    ("google_compute_network", "mtu"): ("packet size, not destination", 1460),
    ("google_compute_network_attachment", "producer_accept_lists"): (
        "which producer projects may attach (the attachment itself is modelled)", []),
    ("google_network_services_gateway", "labels"): ("metadata", {}),
    ("google_network_services_gateway", "delete_swg_autogen_router_on_destroy"): (
        "what destroy removes", True),
    ("google_network_services_gateway", "scope"): ("which gateways share a configuration", "x"),
    ("google_network_services_gateway", "certificate_urls"): ("the gateway's own TLS certificate (transparent mode)",
                                                              []),
    ("google_access_context_manager_service_perimeter", "description"): ("metadata", "x"),
}


def harmless_reason(rtype: str, arg: str = "") -> str | None:
    row = HARMLESS.get((rtype, arg))
    return row[0] if row else None


def egress_relevant(rtype: str) -> bool:
    return rtype.startswith(EGRESS_FAMILIES)


# Boolean arguments the model decides on: Terraform converts the strings "true"/"false" (and "1"/"0") to booleans
# where its schema says bool, so a string here would be read the wrong way by a truthiness test; anything but a JSON
# boolean is UNKNOWN. `enabled` of a proxy rule is required by the provider: absent, the model would guess.
BOOLEAN_ARGS: dict[str, tuple[str, ...]] = {
    "google_network_security_gateway_security_policy_rule": ("enabled", "tls_inspection_enabled"),
    "google_compute_firewall": ("disabled",),
    "google_compute_network_firewall_policy_rule": ("disabled",),
}
REQUIRED_ARGS: dict[str, tuple[str, ...]] = {"google_network_security_gateway_security_policy_rule": ("enabled",)}


def unknown_parts(rtype: str, values: dict) -> list[str]:
    """Why a resource is UNKNOWN to the egress model ([] when it is modelled or harmless, arguments included)."""
    if not egress_relevant(rtype) or harmless_reason(rtype):
        return []
    if rtype not in MODELLED:
        return [f"{rtype} is not a type the egress model reads or a row of its harmless table"]
    out = []
    for arg in BOOLEAN_ARGS.get(rtype, ()):
        v = values.get(arg)
        if v is None and arg in REQUIRED_ARGS.get(rtype, ()):
            out.append(f"argument {arg} of {rtype} is required and absent: the model does not guess whether the"
                       " rule applies")
        elif v is not None and not isinstance(v, bool):
            out.append(f"argument {arg} of {rtype} is {v!r}, not a boolean: Terraform would convert it, the model"
                       " reads only true or false")
    for arg in values:
        if arg in META_ARGS or arg in MODELLED[rtype] or harmless_reason(rtype, arg):
            continue
        out.append(f"argument {arg} of {rtype} is not one the egress model reads or a row of its harmless table")
    return out

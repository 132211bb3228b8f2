"""What jobs can reach, as the review computes it (review.egress_model) on the shipped stacks and on plans that open
egress back up: each plan below FAILS, naming the rule or resource that opens the path (in the synthesized form and
the `terraform show -json` form); the harmless ones pass; and the replay of recorded traffic stays the second check."""
from __future__ import annotations

import copy
import json

import pytest

from review.report import load_accepts, review, to_markdown
from tests.test_review_attacks import _plan, add

RULE = "google_network_security_gateway_security_policy_rule"
PERIMETER = "google_access_context_manager_service_perimeter"
HUB_LIST = "projects/acme-hfgate-sbx/locations/us-central1/urlLists/hfg-sbx-hf-hosts"
JOBS = "inIpRange(source.ip, '10.8.0.0/25')"


def _rule(d, name, priority, session, application="", action="ALLOW", inspect=True, enabled=True):
    d["resource"][RULE][name] = {"name": name, "priority": priority, "basic_profile": action, "enabled": enabled,
                                 "session_matcher": session, "application_matcher": application or None,
                                 "tls_inspection_enabled": inspect or None,
                                 "gateway_security_policy": "hfg-sbx-hf-only", "location": "us-central1"}
    return d


def _one(d, rtype, name_part=""):
    return next(v for k, v in d["resource"][rtype].items() if name_part in k)


def _policy(d):
    return _one(d, "google_network_security_gateway_security_policy")


def _fw_rule(d, name, priority, action, ranges):
    return add(d, "google_compute_network_firewall_policy_rule", name, {
        "firewall_policy": _one(d, "google_compute_network_firewall_policy_rule")["firewall_policy"],
        "rule_name": name, "priority": priority, "action": action, "direction": "EGRESS",
        "match": {"dest_ip_ranges": ranges, "layer4_configs": [{"ip_protocol": "all"}]}})


def _perimeter(d):
    return _one(d, PERIMETER)


def _dry_run(d):
    p = _perimeter(d)
    p["spec"] = p.pop("status")
    p["use_explicit_dry_run_spec"] = True
    return d


def _stop_restricting(d, service):
    status = _perimeter(d)["status"]
    status["restricted_services"] = [s for s in status["restricted_services"] if s != service]
    return d


def _egress_to_every_bucket(d):
    _perimeter(d)["status"]["egress_policies"] = [{
        "egress_from": {"identity_type": "ANY_IDENTITY"},
        "egress_to": {"resources": ["*"], "operations": [{"service_name": "storage.googleapis.com",
                                                          "method_selectors": [{"method": "*"}]}]}}]
    return d


def _network(d):
    return "${google_compute_network." + next(iter(d["resource"]["google_compute_network"])) + ".id}"


def _nat(d):
    add(d, "google_compute_router", "r", {"name": "r", "network": _network(d), "region": "us-central1"})
    return add(d, "google_compute_router_nat", "jobs", {
        "name": "jobs-nat", "router": "${google_compute_router.r.name}", "region": "us-central1",
        "nat_ip_allocate_option": "AUTO_ONLY", "source_subnetwork_ip_ranges_to_nat": "ALL_SUBNETWORKS_ALL_IP_RANGES"})


def _any_method(d):
    """The rules `hub_methods = "any"` generates (stacks.egress_rules), in place of the shipped ones."""
    from stacks.egress_rules import proxy_rules
    shipped = d["resource"][RULE]
    template = next(iter(shipped.values()))
    rules = proxy_rules(("google/txgemma-2b-predict", "google/txgemma-9b-chat"), ("trl-lib/Capybara",),
                        all_hosts_list=HUB_LIST, any_method=True, source_cidr="10.8.0.0/25",
                        content_hosts_list=HUB_LIST.replace("hf-hosts", "hf-content-hosts"))
    d["resource"][RULE] = {r.name: {**template, "name": r.name, "priority": r.priority, "basic_profile": r.action,
                                    "session_matcher": r.session_matcher,
                                    "application_matcher": r.application_matcher or None,
                                    "tls_inspection_enabled": True if r.tls_inspection else None} for r in rules}
    return d


# name: (environment, mutation, what the failing finding names: (address part, text part))
FAMILIES = {
    "an allow rule for another host": (
        "sandbox", lambda d: _rule(d, "allow-other", 150, f"{JOBS} && host() == 'uploads.example.com'"),
        ("allow-other", "uploads.example.com")),
    "an allow rule for write methods on the Hub": (
        "sandbox", lambda d: _rule(d, "allow-post", 105, "host() == 'huggingface.co'", "request.method == 'POST'"),
        ("allow-post", "POST huggingface.co")),
    "the dot-segment deny switched off": (
        "sandbox", lambda d: _one(d, RULE, "deny-ambiguous").update(enabled=False) or d,
        ("allow-repos", "deny-ambiguous-paths is disabled")),
    "the dot-segment deny losing TLS inspection": (
        "sandbox", lambda d: _one(d, RULE, "deny-ambiguous").update(tls_inspection_enabled=None) or d,
        ("deny-ambiguous", "no tls_inspection_enabled")),
    "the gateway policy losing TLS inspection": (
        "sandbox", lambda d: _policy(d).pop("tls_inspection_policy") and d,
        ("deny-write-methods", "no TLS inspection policy")),
    "the content hosts widened to *.huggingface.co": (
        "sandbox", lambda d: _one(d, "google_network_security_url_lists", "content").update(
            values=["*.huggingface.co", "*.hf.co"]) or d,
        ("allow-content-any-path", "datasets-server.huggingface.co")),
    "a rule allowing the Hub from every range": (
        "sandbox", lambda d: _rule(d, "allow-hub-anyone", 150, f"inUrlList(host(), '{HUB_LIST}')",
                                   "request.method in ['GET']"),
        ("allow-hub-anyone", "from platform")),
    "a firewall allow to the internet written as two halves": (
        "sandbox", lambda d: _fw_rule(d, "halves", 900, "allow", ["0.0.0.0/1", "128.0.0.0/1"]),
        ("halves", "internet addresses")),
    "a classic VPC firewall rule (evaluated before the policy)": (
        "sandbox", lambda d: add(d, "google_compute_firewall", "classic", {
            "name": "classic", "network": _network(d), "direction": "EGRESS", "priority": 1000,
            "allow": [{"protocol": "tcp", "ports": ["443"]}], "destination_ranges": ["1.0.0.0/8", "2.0.0.0/8"]}),
        ("google_compute_firewall.classic", "internet addresses")),
    "a Cloud NAT for the jobs' range": (
        "sandbox", _nat, ("google_compute_router_nat.jobs", "Cloud NAT for every subnet")),
    "a route to an appliance": (
        "sandbox", lambda d: add(d, "google_compute_route", "via-vm", {
            "name": "via-vm", "network": _network(d), "dest_range": "0.0.0.0/0", "priority": 100,
            "next_hop_ip": "10.8.0.200"}),
        ("google_compute_route.via-vm", "forward jobs' packets")),
    "a peering": (
        "sandbox", lambda d: add(d, "google_compute_network_peering", "p", {
            "name": "p", "network": _network(d), "peer_network": "projects/other/global/networks/default"}),
        ("google_compute_network_peering.p", "peers the network")),
    "a Private Service Connect endpoint to every Google API": (
        "sandbox", lambda d: add(d, "google_compute_global_forwarding_rule", "apis", {
            "name": "apis", "network": _network(d), "target": "all-apis", "ip_address": "10.8.1.5"}),
        ("google_compute_global_forwarding_rule.apis", "every Google API")),
    "a perimeter that stops restricting Secret Manager": (
        "prod", lambda d: _stop_restricting(d, "secretmanager.googleapis.com"),
        (PERIMETER, "does not restrict secretmanager.googleapis.com")),
    "a perimeter that stops restricting IAM Credentials": (
        "prod", lambda d: _stop_restricting(d, "iamcredentials.googleapis.com"),
        (PERIMETER, "does not restrict iamcredentials.googleapis.com")),
    "an egress policy to every project's buckets": (
        "prod", _egress_to_every_bucket, (PERIMETER, "storage.googleapis.com on every project")),
    "an ingress policy admitting any identity": (
        "prod", lambda d: _perimeter(d)["status"]["ingress_policies"][0]["ingress_from"].update(
            identity_type="ANY_IDENTITY") or d, (PERIMETER, "admits ANY_IDENTITY")),
    "the perimeter moved to dry-run while the contract says enforced": (
        "prod", _dry_run, (PERIMETER, "contract says egress is enforced")),
    "any method on the Hugging Face hosts (hub_methods = \"any\")": (
        "sandbox", _any_method, ("allow-repos", "a write method")),
}

def _cross_team(d):
    rule = _one(d, RULE, "research-allow-repos-0")
    rule["application_matcher"] = rule["application_matcher"].replace(
        "google/txgemma-2b-predict", "google/txgemma-2b-predict|google/gemma-3-4b-it")
    return d


FAMILIES["one team's rule reaching another team's repository"] = (
    "dev", _cross_team, ("research-allow-repos-0", "GET huggingface.co/api/models/google/gemma-3-4b-it from team"
                                                   " research"))

# Found by the round's outside review: a policy attached to a network outside the plan governs none of the jobs'
# packets; a protocol given by its number is that protocol.
FAMILIES["the firewall policy associated with another network"] = (
    "prod", lambda d: _one(d, "google_compute_network_firewall_policy_association").update(
        attachment_target="projects/other/global/networks/default") or d,
    ("implied allow egress", "reach internet addresses"))
FAMILIES["a classic firewall allow naming TCP by its number"] = (
    "prod", lambda d: add(d, "google_compute_firewall", "by-number", {
        "name": "by-number", "network": _network(d), "direction": "EGRESS", "priority": 1000,
        "allow": [{"protocol": "6", "ports": ["443"]}], "destination_ranges": ["1.0.0.0/8"]}),
    ("google_compute_firewall.by-number", "internet addresses"))


FAMILIES["the dot-segment deny moved to a policy the gateway does not apply"] = (
    "sandbox", lambda d: _one(d, RULE, "deny-ambiguous").update(
        gateway_security_policy="projects/x/locations/us-central1/gatewaySecurityPolicies/elsewhere") or d,
    ("allow-repos", "a path a server may normalize"))

FAMILIES["a classic firewall allow of SCTP to the internet"] = (
    "prod", lambda d: add(d, "google_compute_firewall", "sctp", {
        "name": "sctp", "network": _network(d), "direction": "EGRESS", "priority": 100,
        "allow": [{"protocol": "sctp"}], "destination_ranges": ["8.8.8.0/24"]}),
    ("google_compute_firewall.sctp", "internet addresses"))
FAMILIES["a classic firewall allow to one internet address (a /32)"] = (
    "prod", lambda d: add(d, "google_compute_firewall", "one", {
        "name": "one", "network": _network(d), "direction": "EGRESS", "priority": 100,
        "allow": [{"protocol": "udp", "ports": ["53"]}], "destination_ranges": ["8.8.8.8/32"]}),
    ("google_compute_firewall.one", "internet addresses"))


def _perimeter_of_another_project(d):
    add(d, "google_project", "other", {"project_id": "someone-elses-project"}, "data")
    _perimeter(d)["status"]["resources"] = ["projects/${data.google_project.other.number}"]
    return d


def _bridge_first(d):
    """A bridge holding the environment's project and another perimeter's, read before the regular perimeter."""
    bridge = {"name": "accessPolicies/123456789012/servicePerimeters/br", "parent": "accessPolicies/123456789012",
              "title": "br", "perimeter_type": "PERIMETER_TYPE_BRIDGE",
              "status": {"resources": [_perimeter(d)["status"]["resources"][0], "projects/666"]}}
    d["resource"][PERIMETER] = {"bridge": bridge, **d["resource"][PERIMETER]}
    return d


FAMILIES["an enforced perimeter holding another project instead of the environment's"] = (
    "prod", _perimeter_of_another_project, (PERIMETER, "does not hold acme-hfgate-prod"))
FAMILIES["a perimeter bridge to another perimeter's project"] = (
    "prod", _bridge_first, (f"{PERIMETER}.bridge", "perimeter bridge"))
FAMILIES["restricted services given as RESTRICTED-SERVICES (a value of vpc_accessible_services only)"] = (
    "prod", lambda d: _perimeter(d)["status"].update(restricted_services=["RESTRICTED-SERVICES"]) or d,
    (PERIMETER, "does not restrict secretmanager.googleapis.com"))


def test_a_perimeter_project_the_review_cannot_tell_offline_is_unknown(plans, tmp_path):
    """`projects/NUMBER` written as a literal may or may not be the environment's project: UNKNOWN, never
    "enforced"."""
    d = copy.deepcopy(plans["prod"])
    _perimeter(d)["status"]["resources"] = ["projects/999999"]
    plan, _ = _plan(d, tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["ok"] is False and rep["egress"]["enforced"] is False
    assert any(PERIMETER in u["address"] and "projects/999999" in u["why"] for u in rep["egress"]["unknowns"])


def _second_gateway(d):
    """A second policy (with TLS inspection) on a second gateway of the jobs' network: its POST allow would sit
    below the first policy's write deny if the two were read as one order."""
    policies = d["resource"]["google_network_security_gateway_security_policy"]
    policies["other"] = {"name": "other", "location": "us-central1",
                         "tls_inspection_policy": _policy(d)["tls_inspection_policy"]}
    _rule(d, "post", 60000, "host() == 'huggingface.co'", "request.method == 'POST'")
    d["resource"][RULE]["post"]["gateway_security_policy"] = "other"
    gateways = d["resource"]["google_network_services_gateway"]
    gw = copy.deepcopy(next(iter(gateways.values())))
    gateways["gw2"] = {**gw, "name": "gw2", "addresses": ["10.8.0.201"],
                       "gateway_security_policy": "${google_network_security_gateway_security_policy.other.id}"}
    return d


def _masked_inspection(d):
    """The rules' policy loses TLS inspection while another, unused policy has it."""
    _policy(d).pop("tls_inspection_policy")
    d["resource"]["google_network_security_gateway_security_policy"]["other"] = {
        "name": "other", "location": "us-central1", "tls_inspection_policy": "x"}
    return d


# Not understood: UNKNOWN, which fails too, naming the resource.
UNKNOWNS = {
    "a matcher only known at apply": (lambda d: _rule(d, "from-var", 150, "${var.matcher}"), "from-var"),
    "a matcher that is not CEL": (lambda d: _rule(d, "broken", 150, "host() ==== 'x'"), "broken"),
    "a function the proxy does not define": (lambda d: _rule(d, "odd", 150, "sourceRegion() == 'us'"), "odd"),
    "a matcher outside the CEL subset": (
        lambda d: _rule(d, "headers", 150, "host() == 'huggingface.co'", "request.headers['x-a'] == 'b'"),
        "headers"),
    "a regular expression RE2 does not read": (
        lambda d: _rule(d, "lookahead", 150, "host() == 'huggingface.co'", "request.path.matches('^/(?=api)')"),
        "lookahead"),
    "a firewall rule matching FQDNs": (
        lambda d: add(d, "google_compute_network_firewall_policy_rule", "fqdn", {
            "firewall_policy": "hfg-sbx-egress", "rule_name": "fqdn", "priority": 900, "action": "allow",
            "direction": "EGRESS", "match": {"dest_fqdns": ["example.com"],
                                             "layer4_configs": [{"ip_protocol": "all"}]}}),
        "google_compute_network_firewall_policy_rule.fqdn"),
    "a resource type the model does not read": (
        lambda d: add(d, "google_vpc_access_connector", "c", {"name": "c", "network": "hfg-sbx-vpc",
                                                              "ip_cidr_range": "10.8.2.0/28"}),
        "google_vpc_access_connector.c"),
    "a deny rule switched off with the string \"false\" (Terraform converts it)": (
        lambda d: _one(d, RULE, "deny-write").update(enabled="false") or d, "deny-write"),
    "a deny rule losing TLS inspection as the string \"false\"": (
        lambda d: _one(d, RULE, "deny-ambiguous").update(tls_inspection_enabled="false") or d, "deny-ambiguous"),
    "a proxy rule without `enabled`": (lambda d: _one(d, RULE, "deny-write").pop("enabled") and d, "deny-write"),
    "a firewall deny switched off with the string \"true\"": (
        lambda d: _fw_rule(d, "off", 900, "deny", ["1.0.0.0/8"]) and _one(
            d, "google_compute_network_firewall_policy_rule", "off").update(disabled="true") or d, "off"),
    "an allow sharing the write deny's priority": (
        lambda d: _rule(d, "tie", _one(d, RULE, "deny-write")["priority"], "host() == 'huggingface.co'",
                        "request.method == 'POST'"), "tie"),
    "a second gateway with a policy of its own": (_second_gateway, "gw2"),
    "a second gateway security policy masking the lost TLS inspection": (_masked_inspection, "other"),
    "a gateway applying a policy the plan does not hold": (
        lambda d: _one(d, "google_network_services_gateway").update(
            gateway_security_policy="projects/x/locations/us-central1/gatewaySecurityPolicies/open") or d,
        "google_network_services_gateway"),
    "a gateway without a policy": (
        lambda d: _one(d, "google_network_services_gateway").pop("gateway_security_policy") and d,
        "google_network_services_gateway"),
    "an argument the model does not read": (
        lambda d: _one(d, "google_compute_network").update(bgp_best_path_selection_mode="STANDARD") or d,
        "google_compute_network.egress_vpc"),
}


def _egress_failures(rep):
    eg = rep["egress"]
    return [f for f in eg["findings"] + eg["unknowns"] if not f["accepted"]]


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(FAMILIES))
def test_each_plan_that_opens_egress_fails_naming_what_opens_it(plans, tmp_path, case, form):
    env, mutate, (where, text) = FAMILIES[case]
    plan, _ = _plan(mutate(copy.deepcopy(plans[env])), tmp_path, form, None, None)
    rep = review(plan)
    assert rep["ok"] is False and rep["egress"]["ok"] is False, case
    hits = [f for f in rep["egress"]["findings"] if where in f["address"] and text in f["what"] + f["example"]]
    assert hits, (case, [(f["address"], f["what"], f["example"]) for f in _egress_failures(rep)])
    assert where in to_markdown(rep) or where.split(".")[-1] in to_markdown(rep)


@pytest.mark.parametrize("case", sorted(UNKNOWNS))
def test_what_the_model_does_not_understand_is_unknown_and_fails(plans, tmp_path, case):
    mutate, where = UNKNOWNS[case]
    plan, _ = _plan(mutate(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["ok"] is False
    assert any(where in u["address"] and u["why"] for u in rep["egress"]["unknowns"]), rep["egress"]["unknowns"]
    assert "**UNKNOWN**" in to_markdown(rep)       # the report renders it (and the rows it could not compute)


def test_a_failing_egress_finding_passes_only_when_accepted_with_a_reason(plans, tmp_path):
    plan, _ = _plan(_any_method(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)
    rep = review(plan)
    failing = sorted({f["address"] for f in _egress_failures(rep)})
    assert failing and rep["ok"] is False
    from review.report import to_sarif
    results = [r for r in to_sarif(rep, "plan.json")["runs"][0]["results"] if r["ruleId"] == "HFG-EGRESS"]
    assert {r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] for r in results} >= set(failing)
    assert any("write method" in r["message"]["text"] for r in results)
    accept = tmp_path / "accept.toml"
    accept.write_text("".join(f'[[egress]]\naddress = "{a}"\nreason = "uploads to our own org are intended"\n'
                              for a in failing))
    rep = review(plan, accepts=load_accepts(accept))
    assert rep["egress"]["ok"] and all(f["accepted"] for f in rep["egress"]["findings"])


# The harmless table: each row, added to a plan that passes, keeps it passing (prod: proxy, perimeter, gateway).
def _harmless_cases():
    from review.egress_model.known import HARMLESS
    return sorted(HARMLESS)


@pytest.mark.parametrize("row", _harmless_cases(), ids=lambda r: f"{r[0]}.{r[1] or '*'}")
def test_each_harmless_row_keeps_a_passing_plan_passing(plans, tmp_path, row):
    from review.egress_model.known import HARMLESS
    rtype, arg = row
    why, example = HARMLESS[row]
    d = copy.deepcopy(plans["prod"])
    if arg:
        target = next((v for v in d["resource"].get(rtype, {}).values()), None)
        if target is None:
            target = add(d, rtype, "added", {"name": "added"})["resource"][rtype]["added"]
        target[arg] = example
    else:
        add(d, rtype, "added", {"name": "added", **example})
    plan, _ = _plan(d, tmp_path, "synth", None, None)
    rep = review(plan)
    assert why and rep["egress"]["ok"], (row, _egress_failures(rep))


@pytest.mark.parametrize("case,mutate", [
    ("a PSC endpoint to the restricted VIP (vpc-sc)", lambda d: add(d, "google_compute_global_forwarding_rule", "sc", {
        "name": "sc", "network": _network(d), "target": "vpc-sc", "ip_address": "10.18.1.5"})),
    ("a NAT for the proxy's own endpoints", lambda d: add(add(d, "google_compute_router", "r", {
        "name": "r", "network": _network(d)}), "google_compute_router_nat", "swg", {
        "name": "swg", "router": "r", "endpoint_types": ["ENDPOINT_TYPE_SWG"],
        "source_subnetwork_ip_ranges_to_nat": "ALL_SUBNETWORKS_ALL_IP_RANGES"})),
    ("one more firewall deny", lambda d: _fw_rule(d, "deny-more", 900, "deny", ["1.0.0.0/8"])),
    ("the deny's priority written as a string (Terraform converts it)", lambda d: _one(
        d, "google_compute_network_firewall_policy_rule", "deny-all").update(priority="65000") or d),
    ("the restricted VIP's route to the internet gateway (VPC-SC's private access)", lambda d: add(
        d, "google_compute_route", "restricted-vip", {"name": "restricted-vip", "network": _network(d),
                                                      "dest_range": "199.36.153.4/30",
                                                      "next_hop_gateway": "default-internet-gateway"})),
    ("a classic allow to the internet behind the policy (BEFORE_CLASSIC_FIREWALL: the policy's deny decides first)",
     lambda d: _one(d, "google_compute_network").update(
         network_firewall_policy_enforcement_order="BEFORE_CLASSIC_FIREWALL") or add(
         d, "google_compute_firewall", "classic", {
             "name": "classic", "network": _network(d), "direction": "EGRESS", "priority": 1000,
             "allow": [{"protocol": "tcp", "ports": ["443"]}], "destination_ranges": ["1.0.0.0/8"]})),
    ("a classic firewall allow to a private range", lambda d: add(d, "google_compute_firewall", "private", {
        "name": "private", "network": _network(d), "direction": "EGRESS", "priority": 1000,
        "allow": [{"protocol": "tcp"}], "destination_ranges": ["10.0.0.0/8"]})),
])
def test_harmless_network_changes_pass(plans, tmp_path, case, mutate):
    plan, _ = _plan(mutate(copy.deepcopy(plans["prod"])), tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["egress"]["ok"], (case, _egress_failures(rep))


# The shipped stacks ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("env", ["sandbox", "dev", "prod"])
def test_the_shipped_stacks_reach_exactly_what_their_allowlists_imply(plans, tmp_path, env, form):
    plan, _ = _plan(copy.deepcopy(plans[env]), tmp_path, form, None, None)
    rep = review(plan)
    eg = rep["egress"]
    assert eg["ok"] and eg["findings"] == [] and eg["unknowns"] == [], _egress_failures(rep)
    by_source: dict = {}
    for row in eg["reach"]:
        by_source.setdefault(row["source"], []).append(row)
    # Nothing from the platform's other subnets or from anywhere else; no host beyond the protocol table's.
    assert [r["hosts"] for r in by_source["anything else"]] == ["(none)"]
    assert [r["hosts"] for r in by_source["platform"]] == ["(none)"]
    from stacks import hub_protocol as hp
    hosts = {h for r in eg["reach"] for h in r["hosts"].split(", ") if h != "(none)"}
    assert hosts <= set(hp.hosts()) and "datasets-server.huggingface.co" not in hosts
    # Read methods only, everywhere.
    assert {m for r in eg["reach"] for m in r["methods"].split(", ") if m != "-"} <= {"GET", "HEAD"}
    assert "What jobs can reach, per source range" in to_markdown(rep)


def test_the_contract_says_what_the_perimeter_is(plans):
    """egress_enforced is the perimeter's real state: prod's enforced perimeter says true, sandbox (none) and a
    dry-run perimeter say false (the review fails a contract that claims more)."""
    assert plans["prod"]["output"]["egress_enforced"]["value"] is True
    assert plans["sandbox"]["output"]["egress_enforced"]["value"] is False
    from stacks.config import load_settings, parse_settings
    from stacks.contract import outputs_from_settings
    raw = {"project_id": "acme-hfgate-prod", "region": "europe-west4", "prefix": "hfg-prod",
           "access_policy_id": "123456789012", "perimeter_dry_run": True}
    assert outputs_from_settings(parse_settings("prod", raw)).egress_enforced is False
    assert outputs_from_settings(load_settings("prod")).egress_enforced is True


def test_the_dev_stack_lists_its_allowlist_and_passes_its_replay(plans, tmp_path):
    for form in ("synth", "plan"):
        plan, _ = _plan(copy.deepcopy(plans["sandbox"]), tmp_path / form, form, None, None)
        al = review(plan)["allowlist"]
        assert al["ok"] and al["models"] == ["google/txgemma-2b-predict", "google/txgemma-9b-chat"], form
        assert {d["expect"] for d in al["replay"]} == {"allow", "deny"} and all(d["as_expected"] for d in al["replay"])
        assert any(d["note"] == "upload" and d["action"] == "deny" for d in al["replay"])
        assert any("txgemma-9b-chat" in d["path"] and d["action"] == "allow" for d in al["replay"])
        # The Xet route: the token route of each listed repository, a reconstruction and a xorb are allowed; an
        # upload to the CAS and the dataset viewer are denied.
        decided = {(d["method"], d["host"], d["path"].split("/0000")[0]): d["action"] for d in al["replay"]}
        assert decided[("GET", "huggingface.co", "/api/models/google/txgemma-9b-chat/xet-read-token/main")] == "allow"
        assert decided[("GET", "huggingface.co", "/api/datasets/trl-lib/Capybara/xet-read-token/main")] == "allow"
        assert decided[("GET", "cas-server.xethub.hf.co", "/v2/reconstructions")] == "allow"
        assert decided[("POST", "cas-server.xethub.hf.co", "/v1/xorbs/default")] == "deny"
        assert decided[("GET", "datasets-server.huggingface.co", "/rows")] == "deny"


def test_an_environment_without_an_allowlist_is_read_only_on_the_download_hosts(plans, tmp_path):
    plan, _ = _plan(copy.deepcopy(plans["prod"]), tmp_path, "synth", None, None)
    rep = review(plan)
    assert "any repository" in rep["allowlist"]["summary"] and rep["allowlist"]["replay"] == []
    jobs = [r for r in rep["egress"]["reach"] if r["source"] == "jobs"]
    assert [r["methods"] for r in jobs] == ["GET, HEAD"] and "datasets-server" not in jobs[0]["hosts"]


def test_the_replay_still_catches_what_it_caught(plans, tmp_path):
    """The second check, on its own: a rule above the generated ones that allows the Hub is seen by the replay too."""
    d = _rule(copy.deepcopy(plans["sandbox"]), "allow-hub", 90, f"inUrlList(host(), '{HUB_LIST}')")
    plan, _ = _plan(d, tmp_path, "synth", None, None)
    al = review(plan)["allowlist"]
    assert al["ok"] is False and any(not x["as_expected"] and x["rule"] == "allow-hub" for x in al["replay"])


def _load(data):
    import tempfile
    from pathlib import Path
    from review.plan import load
    folder = Path(tempfile.mkdtemp()) / "s"
    folder.mkdir()
    (folder / "cdk.tf.json").write_text(json.dumps(data))
    return load(folder / "cdk.tf.json")


@pytest.mark.parametrize("role,member,fails", [
    ("roles/privateca.certificateRequester", "group:ml@example.com", True),
    ("roles/privateca.certificateManager", "user:eve@example.com", True),
    ("roles/privateca.auditor", "group:sec@example.com", False),
    ("roles/privateca.someFutureRole", "group:sec@example.com", True),
])
def test_only_the_proxy_may_issue_from_the_inspection_pool(plans, role, member, fails):
    d = copy.deepcopy(plans["sandbox"])
    pool_iam = d["resource"]["google_privateca_ca_pool_iam_member"]
    template = next(iter(pool_iam.values()))
    pool_iam["extra"] = {**template, "role": role, "member": member}
    rep = review(_load(d))
    hfg011 = next(p for p in rep["policies"] if p["id"] == "HFG011")
    assert hfg011["passed"] is (not fails) and rep["ok"] is (not fails)


def test_hub_methods_any_is_an_explicit_setting_the_review_fails(tmp_path):
    """`hub_methods = "any"` synthesizes rules without the write deny; the review fails them, naming each rule that
    allows a write method; anything but "read" or "any" is refused at synth."""
    import textwrap
    from stacks.config import ConfigError, parse_settings
    from tests.conftest import run_main
    base = {"project_id": "acme-hfgate-any", "region": "us-central1", "prefix": "hfg-any"}
    with pytest.raises(ConfigError) as err:
        parse_settings("any", {**base, "hub_methods": "sometimes"})
    assert "hub_methods" in str(err.value)
    config = tmp_path / "config"
    config.mkdir()
    (config / "any.toml").write_text(textwrap.dedent("""
        project_id = "acme-hfgate-any"
        region = "us-central1"
        prefix = "hfg-any"
        hub_methods = "any"
        allow_models = ["google/txgemma-2b-predict"]
    """))
    out = tmp_path / "synth"
    proc = run_main({"CDKTF_OUTDIR": str(out), "HFGATE_CONFIG_DIR": str(config), "HFGATE_ENVS": "any"})
    assert proc.returncode == 0, proc.stderr
    from review.plan import load
    data = json.loads((out / "stacks" / "hfgate-any" / "cdk.tf.json").read_text())
    assert not any("deny-write-methods" in k for k in data["resource"][RULE])
    rep = review(load(out / "stacks" / "hfgate-any" / "cdk.tf.json"))
    assert rep["ok"] is False
    writes = [f for f in rep["egress"]["findings"] if "write method" in f["what"]]
    assert writes and all("allow-" in f["rule"] for f in writes)


def test_secondary_ranges_are_source_ranges_too(plans, tmp_path):
    """A subnet's secondary range holds workloads of the platform: it is in the platform's range, which reaches
    nothing."""
    d = copy.deepcopy(plans["sandbox"])
    _one(d, "google_compute_subnetwork", "proxy-subnet")["secondary_ip_range"] = [
        {"range_name": "pods", "ip_cidr_range": "10.50.0.0/24"}]
    plan, _ = _plan(d, tmp_path, "synth", None, None)
    rep = review(plan)
    platform = next(s for s in rep["egress"]["sources"] if s["name"] == "platform")
    assert "10.50.0.0/24" in platform["range"] and rep["egress"]["ok"]


@pytest.mark.parametrize("matcher,point,want", [
    ("host() == 'huggingface.co'", ("10.8.0.2", "huggingface.co", "GET", "/"), True),
    ("'huggingface.co' == host()", ("10.8.0.2", "hf.co", "GET", "/"), False),
    ("host().endsWith('.hf.co')", ("10.8.0.2", "cdn-lfs.hf.co", "GET", "/"), True),
    ("inUrlList(host(), 'L')", ("10.8.0.2", "a.huggingface.co", "GET", "/"), True),
    ("inUrlList(host(), 'L')", ("10.8.0.2", "huggingface.co.evil.example", "GET", "/"), False),
    ("request.method in ['GET', 'HEAD']", ("10.8.0.2", "h", "HEAD", "/"), True),
    ("request.method == 'POST'", ("10.8.0.2", "h", "GET", "/"), False),
    ("request.path == '/a'", ("10.8.0.2", "h", "GET", "/a"), True),
    ("request.path in ['/a', '/b']", ("10.8.0.2", "h", "GET", "/c"), False),
    ("request.path.startsWith('/api/')", ("10.8.0.2", "h", "GET", "/api/x"), True),
    ("request.path.contains('..')", ("10.8.0.2", "h", "GET", "/a/../b"), True),
    ("request.path.matches('^/v[12]/x$')", ("10.8.0.2", "h", "GET", "/v2/x"), True),
    ("inIpRange(source.ip, '10.8.0.0/25')", ("10.8.0.200", "h", "GET", "/"), False),
    ("!(request.method in ['GET']) && (true || false)", ("10.8.0.2", "h", "PUT", "/"), True),
])
def test_each_term_of_the_cel_subset_reads_as_the_proxy_defines_it(matcher, point, want):
    """Each row of the subset (review/egress_model/cel.py) against the same request decided by cel-python, the
    replay's engine: the model's reading and the CEL engine agree."""
    import ipaddress
    from review.egress import ProxyPolicy, Request
    from review.egress_model.cel import Point, evaluate, parse
    lists = {"L": ("*.huggingface.co", "huggingface.co")}
    src, host, method, path = point
    assert evaluate(parse(matcher), Point(ipaddress.ip_address(src), host, method, path), lists) is want
    policy = ProxyPolicy([], {"L": list(lists["L"])})
    assert policy._matches(matcher, Request(host, method, path, source_ip=src)) is want


@pytest.mark.parametrize("matcher", ["request.headers['a'] == 'b'", "host() != 'x'", "request.path.endsWith('x')",
                                     "size(request.path) > 3", "request.url().contains('x')"])
def test_a_term_outside_the_subset_is_unsupported(matcher):
    from review.egress_model.cel import Unsupported, parse
    with pytest.raises(Unsupported):
        parse(matcher)


def test_the_cli_fails_naming_what_opens_egress(plans, tmp_path):
    """`hfgate review` exits 1 and names the resource on stderr; the accept file's [[egress]] entry makes it pass."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    _, path = _plan(_nat(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)
    base = [sys.executable, "-m", "jobs.cli", "review", "--plan", str(path), "--no-checkov", "--out",
            str(tmp_path / "r")]
    proc = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "egress: google_compute_router_nat.jobs" in proc.stderr, proc.stderr[-800:]
    accept = tmp_path / "accept.toml"
    accept.write_text('[[egress]]\naddress = "google_compute_router_nat.jobs"\nreason = "the NAT serves a VM subnet'
                      ' the firewall keeps from the internet"\n')
    proc = subprocess.run(base + ["--accept", str(accept)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "accepted: the NAT serves" in (tmp_path / "r" / "REPORT.md").read_text()

"""Egress for the training job in `proxy` mode: Hugging Face hosts only.

Path: job -> PSC interface (network attachment, in a subnet of its own) -> our VPC -> Secure Web Proxy (allows the
HF URL list, denies the rest) -> the proxy's own Cloud NAT -> internet. A network firewall policy denies all other
egress from the VPC.

What this does not govern, per Google's "Use Private Service Connect interface for Vertex AI Training" page: the
job's Google API traffic (Secret Manager, Cloud Storage, the metadata server) resolves and stays in Google's producer
environment, never in this VPC (no Private Google Access, DNS or routes of ours apply to it), and without a VPC
Service Controls perimeter (stacks.perimeter) the job keeps Google-managed internet egress: the proxy is advisory,
honoured by clients that use HTTPS_PROXY. The outputs contract (`egress_enforced`) and the review say so.
"""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google.compute_firewall import ComputeFirewall, ComputeFirewallDeny, ComputeFirewallLogConfig
from cdktn_provider_google.compute_network import ComputeNetwork
from cdktn_provider_google.compute_network_attachment import ComputeNetworkAttachment
from cdktn_provider_google.compute_network_firewall_policy import ComputeNetworkFirewallPolicy
from cdktn_provider_google.compute_network_firewall_policy_association import (
    ComputeNetworkFirewallPolicyAssociation,
)
from cdktn_provider_google.compute_network_firewall_policy_rule import (
    ComputeNetworkFirewallPolicyRule,
    ComputeNetworkFirewallPolicyRuleMatch,
    ComputeNetworkFirewallPolicyRuleMatchLayer4Configs,
)
from cdktn_provider_google.compute_subnetwork import ComputeSubnetwork, ComputeSubnetworkLogConfig
from cdktn_provider_google.network_security_gateway_security_policy import NetworkSecurityGatewaySecurityPolicy
from cdktn_provider_google.network_security_gateway_security_policy_rule import (
    NetworkSecurityGatewaySecurityPolicyRule,
)
from cdktn_provider_google.network_security_url_lists import NetworkSecurityUrlLists
from cdktn_provider_google.network_services_gateway import NetworkServicesGateway

import ipaddress

from stacks.naming import PROXY_PORT, Names, subnet_halves
from stacks.project import Project


class HfEgressNetwork(Construct):
    def __init__(self, scope: Construct, id: str, *, project: Project, region: str, names: Names,
                 subnet_cidr: str, proxy_only_cidr: str, host_rules: tuple[str, ...],
                 labels: dict[str, str]) -> None:
        super().__init__(scope, id)
        pid = project.project_id
        self.network = ComputeNetwork(self, "vpc", project=pid, name=names.network,
                                      auto_create_subnetworks=False, routing_mode="REGIONAL",
                                      delete_default_routes_on_create=False)
        # Defence in depth under the firewall policy: nothing may connect in, from anywhere.
        ComputeFirewall(self, "deny-all-ingress", project=pid, network=self.network.id, name=f"{names.network}-deny-ingress",
                        direction="INGRESS", priority=65534, source_ranges=["0.0.0.0/0"],
                        deny=[ComputeFirewallDeny(protocol="all")],
                        log_config=ComputeFirewallLogConfig(metadata="INCLUDE_ALL_METADATA"))
        attachment_cidr, proxy_cidr = (str(n) for n in subnet_halves(ipaddress.ip_network(subnet_cidr)))
        flow_logs = ComputeSubnetworkLogConfig(aggregation_interval="INTERVAL_5_SEC", flow_sampling=1.0,
                                               metadata="INCLUDE_ALL_METADATA")
        # Private Google Access has no effect on Vertex jobs (their Google API traffic never enters this VPC); it
        # is on so that anything else placed in these subnets reaches Google APIs without a public address.
        # The PSC interfaces page recommends a subnet used by the network attachment only.
        self.subnet = ComputeSubnetwork(
            self, "jobs-subnet", project=pid, region=region, name=names.subnet, network=self.network.id,
            ip_cidr_range=attachment_cidr, private_ip_google_access=True, log_config=flow_logs,
            description="Vertex AI PSC interfaces only (the network attachment's subnet)")
        self.proxy_subnet = ComputeSubnetwork(
            self, "proxy-subnet", project=pid, region=region, name=names.proxy_subnet, network=self.network.id,
            ip_cidr_range=proxy_cidr, private_ip_google_access=True, log_config=flow_logs,
            description="The Secure Web Proxy's address")
        self.proxy_only_subnet = ComputeSubnetwork(
            self, "proxy-only-subnet", project=pid, region=region, name=names.proxy_only_subnet,
            network=self.network.id, ip_cidr_range=proxy_only_cidr, purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE")
        self.attachment = ComputeNetworkAttachment(
            self, "psc-interface", project=pid, region=region, name=names.network_attachment,
            connection_preference="ACCEPT_AUTOMATIC", subnetworks=[self.subnet.self_link],
            description="Vertex AI custom jobs attach here (PSC interface)")
        agent = project.service_agent("aiplatform.googleapis.com")
        project.grant_role(agent, "roles/compute.networkAdmin", "Vertex attaches the PSC interface")
        # No roles/dns.peer: the job spec sets no dns_peering_configs, the only case that needs it.
        # No Cloud Router or NAT of ours: Secure Web Proxy's "known limitations" page says the first proxy in a
        # network and region provisions its own Cloud NAT gateway for proxy endpoints; a second NAT for
        # ENDPOINT_TYPE_SWG on our router would collide with it. The proxy owns egress (and removes its router on
        # destroy: delete_swg_autogen_router_on_destroy).

        self.url_list = NetworkSecurityUrlLists(
            self, "hf-hosts", project=pid, location=region, name=names.url_list, values=list(host_rules),
            description="Hugging Face Hub hosts (suffix rules; the Hub redirects to CDN and xet hosts)")
        self.policy = NetworkSecurityGatewaySecurityPolicy(
            self, "policy", project=pid, location=region, name=names.gateway_policy,
            description="Allow the Hugging Face hosts; everything else is denied by default")
        NetworkSecurityGatewaySecurityPolicyRule(
            self, "allow-hf", project=pid, location=region, name="allow-hugging-face",
            gateway_security_policy=self.policy.name, enabled=True, priority=1000, basic_profile="ALLOW",
            session_matcher=f"inUrlList(host(), '{self.url_list.id}')",
            description="Hugging Face Hub only")
        self.gateway = NetworkServicesGateway(
            self, "proxy", project=pid, location=region, name=names.gateway, type="SECURE_WEB_GATEWAY",
            addresses=[names.proxy_address], ports=[PROXY_PORT], routing_mode="EXPLICIT_ROUTING_MODE",
            network=self.network.id, subnetwork=self.proxy_subnet.id, gateway_security_policy=self.policy.id,
            labels=labels, delete_swg_autogen_router_on_destroy=True,
            depends_on=[self.proxy_only_subnet])
        self.proxy_url = f"http://{names.proxy_address}:{PROXY_PORT}"

        fw = ComputeNetworkFirewallPolicy(self, "egress-policy", project=pid, name=names.firewall_policy,
                                          description="Default-deny egress: only the proxy")
        self._rule(fw, "allow-proxy", 1000, "allow", [f"{names.proxy_address}/32"], [str(PROXY_PORT)],
                   "to the Secure Web Proxy")
        self._rule(fw, "deny-all-egress", 65000, "deny", ["0.0.0.0/0"], None, "everything else")
        ComputeNetworkFirewallPolicyAssociation(self, "egress-policy-association", project=pid,
                                                name=f"{names.firewall_policy}-vpc",
                                                attachment_target=self.network.id,
                                                firewall_policy=fw.id)


    def _rule(self, policy, name: str, priority: int, action: str, ranges: list[str], ports: list[str] | None,
              why: str) -> None:
        ComputeNetworkFirewallPolicyRule(
            self, name, project=policy.project, firewall_policy=policy.name, rule_name=name, priority=priority,
            action=action, direction="EGRESS", enable_logging=True, description=f"{action} egress {why}",
            match=ComputeNetworkFirewallPolicyRuleMatch(
                dest_ip_ranges=ranges,
                layer4_configs=[ComputeNetworkFirewallPolicyRuleMatchLayer4Configs(
                    ip_protocol="tcp" if ports else "all", ports=ports)]))

"""Egress for the training job in `proxy` mode: Hugging Face hosts only.

Path: job -> PSC interface (network attachment) -> our VPC -> Secure Web Proxy (allows the HF URL list, denies the
rest) -> Cloud NAT -> internet. A network firewall policy denies all other egress; Google APIs resolve to the
restricted VIP. Without a VPC Service Controls perimeter (stacks.perimeter) Vertex can bypass the PSC interface, so
the allowlist is advisory: the outputs contract and the review say so.
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
from cdktn_provider_google.compute_router import ComputeRouter
from cdktn_provider_google.compute_router_nat import ComputeRouterNat, ComputeRouterNatLogConfig
from cdktn_provider_google.compute_subnetwork import ComputeSubnetwork, ComputeSubnetworkLogConfig
from cdktn_provider_google.dns_managed_zone import (
    DnsManagedZone,
    DnsManagedZonePrivateVisibilityConfig,
    DnsManagedZonePrivateVisibilityConfigNetworks,
)
from cdktn_provider_google.dns_record_set import DnsRecordSet
from cdktn_provider_google.network_security_gateway_security_policy import NetworkSecurityGatewaySecurityPolicy
from cdktn_provider_google.network_security_gateway_security_policy_rule import (
    NetworkSecurityGatewaySecurityPolicyRule,
)
from cdktn_provider_google.network_security_url_lists import NetworkSecurityUrlLists
from cdktn_provider_google.network_services_gateway import NetworkServicesGateway

from stacks.facts import RESTRICTED_GOOGLEAPIS_CIDR, RESTRICTED_GOOGLEAPIS_IPS
from stacks.naming import PROXY_PORT, Names
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
        self.subnet = ComputeSubnetwork(
            self, "jobs-subnet", project=pid, region=region, name=names.subnet, network=self.network.id,
            ip_cidr_range=subnet_cidr, private_ip_google_access=True,
            log_config=ComputeSubnetworkLogConfig(aggregation_interval="INTERVAL_5_SEC", flow_sampling=1.0,
                                                  metadata="INCLUDE_ALL_METADATA"))
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
        project.grant_role(agent, "roles/dns.peer", "Vertex resolves through the private googleapis zone")

        self.router = ComputeRouter(self, "router", project=pid, region=region, name=names.router,
                                    network=self.network.id)
        ComputeRouterNat(
            self, "nat", project=pid, region=region, name=names.nat, router=self.router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            # Only the Secure Web Proxy gets NAT: nothing else in the VPC reaches the internet.
            endpoint_types=["ENDPOINT_TYPE_SWG"],
            log_config=ComputeRouterNatLogConfig(enable=True, filter="ALL"))

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
            network=self.network.id, subnetwork=self.subnet.id, gateway_security_policy=self.policy.id,
            labels=labels, delete_swg_autogen_router_on_destroy=True,
            depends_on=[self.proxy_only_subnet])
        self.proxy_url = f"http://{names.proxy_address}:{PROXY_PORT}"

        fw = ComputeNetworkFirewallPolicy(self, "egress-policy", project=pid, name=names.firewall_policy,
                                          description="Default-deny egress: only the proxy and restricted Google APIs")
        self._rule(fw, "allow-proxy", 1000, "allow", [f"{names.proxy_address}/32"], [str(PROXY_PORT)],
                   "to the Secure Web Proxy")
        self._rule(fw, "allow-restricted-apis", 1010, "allow", [RESTRICTED_GOOGLEAPIS_CIDR], ["443"],
                   "to restricted.googleapis.com (Secret Manager, Storage, Vertex AI)")
        self._rule(fw, "deny-all-egress", 65000, "deny", ["0.0.0.0/0"], None, "everything else")
        ComputeNetworkFirewallPolicyAssociation(self, "egress-policy-association", project=pid,
                                                name=f"{names.firewall_policy}-vpc",
                                                attachment_target=self.network.id,
                                                firewall_policy=fw.id)

        zone = DnsManagedZone(
            self, "googleapis-zone", project=pid, name=names.dns_zone, dns_name="googleapis.com.",
            visibility="private", description="Google APIs through the restricted VIP (VPC-SC)",
            labels=labels,
            private_visibility_config=DnsManagedZonePrivateVisibilityConfig(
                networks=[DnsManagedZonePrivateVisibilityConfigNetworks(network_url=self.network.id)]))
        DnsRecordSet(self, "restricted-a", project=pid, managed_zone=zone.name,
                     name="restricted.googleapis.com.", type="A", ttl=300, rrdatas=list(RESTRICTED_GOOGLEAPIS_IPS))
        DnsRecordSet(self, "wildcard-cname", project=pid, managed_zone=zone.name, name="*.googleapis.com.",
                     type="CNAME", ttl=300, rrdatas=["restricted.googleapis.com."])

    def _rule(self, policy, name: str, priority: int, action: str, ranges: list[str], ports: list[str] | None,
              why: str) -> None:
        ComputeNetworkFirewallPolicyRule(
            self, name, project=policy.project, firewall_policy=policy.name, rule_name=name, priority=priority,
            action=action, direction="EGRESS", enable_logging=True, description=f"{action} egress {why}",
            match=ComputeNetworkFirewallPolicyRuleMatch(
                dest_ip_ranges=ranges,
                layer4_configs=[ComputeNetworkFirewallPolicyRuleMatchLayer4Configs(
                    ip_protocol="tcp" if ports else "all", ports=ports)]))

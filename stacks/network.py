"""Egress for the training job in `proxy` mode: reads from the Hugging Face download hosts only, or only of the
allowlisted repositories.

Path: job -> PSC interface (network attachment, in a subnet of its own) -> our VPC -> Secure Web Proxy (rules from
stacks.egress_rules and the protocol table stacks.hub_protocol, with TLS inspection: read methods only on every
Hugging Face host, the table's hosts only, with an allowlist the listed repositories' shapes; denies the rest) -> the
proxy's own Cloud NAT -> internet. A network firewall policy denies all other egress from the VPC. The review
computes what all of it allows (review.egress_model).

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
from cdktn_provider_google.network_security_tls_inspection_policy import NetworkSecurityTlsInspectionPolicy
from cdktn_provider_google.network_services_gateway import NetworkServicesGateway
from cdktn_provider_google.privateca_ca_pool import PrivatecaCaPool
from cdktn_provider_google.privateca_ca_pool_iam_member import PrivatecaCaPoolIamMember
from cdktn_provider_google.privateca_certificate_authority import PrivatecaCertificateAuthority
from cdktn import Fn

import ipaddress

from stacks import hub_protocol as hp
from stacks.egress_rules import content_url_list_hosts, team_rules, proxy_rules, url_list_id
from stacks.naming import PROXY_PORT, Names, subnet_halves
from stacks.project import Project


class HfEgressNetwork(Construct):
    def __init__(self, scope: Construct, id: str, *, project: Project, region: str, names: Names,
                 subnet_cidr: str, proxy_only_cidr: str, host_rules: tuple[str, ...],
                 labels: dict[str, str], allow_models: tuple[str, ...] = (),
                 allow_datasets: tuple[str, ...] = (), teams: tuple = (), team_names: dict | None = None,
                 team_projects: dict[str, Project] | None = None, any_method: bool = False) -> None:
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
        # One network attachment per team, each in a subnet of its own: the proxy tells teams apart by the source
        # address of their jobs (inIpRange(source.ip, ...) in stacks.egress_rules.team_rules).
        subnets = {t.name: (f"{t.name}-", team_names[t.name], t.subnet_cidr) for t in teams} if teams else \
            {"": ("", names, attachment_cidr)}
        self.subnets: dict[str, ComputeSubnetwork] = {}
        for key, (idp, n, cidr) in subnets.items():
            self.subnets[key] = ComputeSubnetwork(
                self, f"{idp}jobs-subnet", project=pid, region=region, name=n.subnet, network=self.network.id,
                ip_cidr_range=cidr, private_ip_google_access=True, log_config=flow_logs,
                description="Vertex AI PSC interfaces only (the network attachment's subnet)"
                            + (f", team {key}" if key else ""))
        self.proxy_subnet = ComputeSubnetwork(
            self, "proxy-subnet", project=pid, region=region, name=names.proxy_subnet, network=self.network.id,
            ip_cidr_range=proxy_cidr, private_ip_google_access=True, log_config=flow_logs,
            description="The Secure Web Proxy's address")
        self.proxy_only_subnet = ComputeSubnetwork(
            self, "proxy-only-subnet", project=pid, region=region, name=names.proxy_only_subnet,
            network=self.network.id, ip_cidr_range=proxy_only_cidr, purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE")
        # A team's attachment lives in the team's project (the one its jobs run in; stacks.shared_vpc), on the team's
        # subnet of this network: the team's project is a Shared VPC service
        # project whose Vertex AI agent may use that one subnet. Google: "In a Shared VPC deployment, create the
        # subnet used for the Network Attachment in the Host Project, then create the Private Service Connect
        # Network Attachment in the Service Project" ("Set up a Private Service Connect interface", vpc-psc-i-setup).
        # Without teams: this project's attachment.
        owners = {key: (team_projects or {}).get(key, project) for key in subnets}
        self.shared_vpc = None
        if teams:
            from stacks.shared_vpc import SharedVpc
            self.shared_vpc = SharedVpc(self, "shared-vpc", host=project)
            for key in subnets:
                self.shared_vpc.attach(key, owners[key], self.subnets[key], region)
        self.attachments: dict[str, ComputeNetworkAttachment] = {
            key: ComputeNetworkAttachment(
                self, f"{idp}psc-interface", project=owners[key].project_id, region=region,
                # ACCEPT_AUTOMATIC: an accept list holds producer projects, for Vertex AI Google's tenant project,
                # which no page names (README, "A team is a project"): nothing a team's project controls.
                name=n.network_attachment, connection_preference="ACCEPT_AUTOMATIC",
                subnetworks=[self.subnets[key].self_link],
                description="Vertex AI custom jobs attach here (PSC interface)" + (f", team {key}" if key else ""),
                depends_on=[self.shared_vpc.service_projects[key]] if self.shared_vpc else None)
            for key, (idp, n, _c) in subnets.items()}
        # Vertex AI's agent attaches the PSC interface, in the project of the attachment: a team's agent on its own
        # project only (never on the host's, which holds every team's subnet). Google: "In the project where you
        # create the network attachment, grant the `compute.networkAdmin` role to the [...] service agent of the same
        # project" (vpc-psc-i-setup); its Network User on the subnet is stacks.shared_vpc's.
        for owner in dict.fromkeys(owners.values()):
            owner.grant_role(owner.service_agent("aiplatform.googleapis.com"), "roles/compute.networkAdmin",
                             "Vertex attaches the PSC interface", "vertex-agent")
        # No roles/dns.peer: the job spec sets no dns_peering_configs, the only case that needs it.
        # No Cloud Router or NAT of ours: Secure Web Proxy's "known limitations" page says the first proxy in a
        # network and region provisions its own Cloud NAT gateway for proxy endpoints; a second NAT for
        # ENDPOINT_TYPE_SWG on our router would collide with it. The proxy owns egress (and removes its router on
        # destroy: delete_swg_autogen_router_on_destroy).

        # Only the hosts of the Hub's download protocol table (stacks.hub_protocol), never `*.huggingface.co`
        # wholesale (datasets-server.huggingface.co serves any dataset's rows). TLS inspection in every proxy-mode
        # environment: the rules deny write methods on every Hugging Face host, which the proxy sees only inside TLS.
        self.url_list = NetworkSecurityUrlLists(
            self, "hf-hosts", project=pid, location=region, name=names.url_list, values=list(hp.hosts()),
            description="Hugging Face download hosts (stacks/hub_protocol.py)")
        scoped = bool(allow_models or allow_datasets or any(t.allow_models or t.allow_datasets for t in teams))
        lists = [self.url_list]
        if scoped:
            lists.append(NetworkSecurityUrlLists(
                self, "hf-content-hosts", project=pid, location=region, name=names.content_url_list,
                values=list(content_url_list_hosts()),
                description="Hugging Face content hosts (Xet transfer and bridge, LFS CDN): paths are content hashes"))
        self.ca_certificate = ""
        tls_policy = self._tls_inspection(project, region, names)
        self.policy = NetworkSecurityGatewaySecurityPolicy(
            self, "policy", project=pid, location=region, name=names.gateway_policy,
            tls_inspection_policy=tls_policy.id,
            description=("Allow the listed Hugging Face repositories" if scoped else
                         "Allow the Hugging Face download hosts")
            + (", any method" if any_method else ", read-only") + "; everything else is denied by default")
        # Rules from the allowlist and the protocol table (stacks.egress_rules); url lists by literal name, so the
        # matchers are known at plan time and the review can compute what they allow.
        lists_ = dict(all_hosts_list=url_list_id(pid, region, names.url_list),
                      content_hosts_list=url_list_id(pid, region, names.content_url_list), any_method=any_method)
        self.rules = team_rules(teams, **lists_) if teams else proxy_rules(allow_models, allow_datasets, **lists_,
                                                                           source_cidr=attachment_cidr)
        for rule in self.rules:
            NetworkSecurityGatewaySecurityPolicyRule(
                self, rule.name, project=pid, location=region, name=rule.name,
                gateway_security_policy=self.policy.name, enabled=True, priority=rule.priority,
                basic_profile=rule.action, session_matcher=rule.session_matcher,
                application_matcher=rule.application_matcher or None,
                tls_inspection_enabled=True if rule.tls_inspection else None,
                description=rule.description, depends_on=lists)
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


    def _tls_inspection(self, project: Project, region: str, names: Names) -> NetworkSecurityTlsInspectionPolicy:
        """A CA pool with one root CA that the proxy issues interception certificates from, the Network Security
        service agent allowed to use it, and the TLS inspection policy ("Enable TLS inspection"). The CA's
        certificate is exported in the outputs contract (`proxy_ca_certificate`); the job's bootstrap adds it to
        the trust settings its clients read."""
        pid = project.project_id
        pool = PrivatecaCaPool(self, "inspection-ca-pool", project=pid, location=region, name=names.ca_pool,
                               tier="DEVOPS", publishing_options={"publish_ca_cert": False, "publish_crl": False})
        ca = PrivatecaCertificateAuthority(
            self, "inspection-ca", project=pid, location=region, pool=pool.name,
            certificate_authority_id=names.ca, type="SELF_SIGNED", deletion_protection=True,
            lifetime=f"{10 * 365 * 24 * 3600}s", key_spec={"algorithm": "EC_P256_SHA256"},
            config={"subject_config": {"subject": {"organization": "hfgate",
                                                   "common_name": f"{names.ca} (Secure Web Proxy TLS inspection)"}},
                    # The provider sends max_issuer_path_length = 0 only with zero_max_issuer_path_length = true.
                    "x509_config": {"ca_options": {"is_ca": True, "max_issuer_path_length": 0,
                                                   "zero_max_issuer_path_length": True},
                                    "key_usage": {"base_key_usage": {"cert_sign": True, "crl_sign": True},
                                                  "extended_key_usage": {"server_auth": True}}}})
        agent = project.service_agent("networksecurity.googleapis.com")
        pool_user = PrivatecaCaPoolIamMember(self, "inspection-ca-pool-user", ca_pool=pool.id,
                                             role="roles/privateca.certificateManager", member=agent)
        self.ca_certificate = Fn.element(ca.pem_ca_certificates, 0)
        return NetworkSecurityTlsInspectionPolicy(
            self, "tls-inspection", project=pid, location=region, name=names.tls_inspection_policy,
            # No min_tls_version: the API reference documents it as not yet honoured by Secure Web Proxy. The
            # policy waits for the agent's role on the pool, as the provider's TLS inspection example does.
            ca_pool=pool.id, exclude_public_ca_set=False,
            description="Lets the proxy see methods and paths to the Hugging Face hosts", depends_on=[ca, pool_user])

    def _rule(self, policy, name: str, priority: int, action: str, ranges: list[str], ports: list[str] | None,
              why: str) -> None:
        ComputeNetworkFirewallPolicyRule(
            self, name, project=policy.project, firewall_policy=policy.name, rule_name=name, priority=priority,
            action=action, direction="EGRESS", enable_logging=True, description=f"{action} egress {why}",
            match=ComputeNetworkFirewallPolicyRuleMatch(
                dest_ip_ranges=ranges,
                layer4_configs=[ComputeNetworkFirewallPolicyRuleMatchLayer4Configs(
                    ip_protocol="tcp" if ports else "all", ports=ports)]))

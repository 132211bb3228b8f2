"""Shared VPC: the environment's project hosts the network; each team's project is a service project of it.

Why (README, "Teams"): Vertex AI takes the network attachment "within the region and user project" of the job
(`PscInterfaceConfig.network_attachment`, google-cloud-aiplatform's aiplatform_v1 types; "Use Private Service Connect
interface for Vertex AI Training": set up the network, subnetwork and network attachment "in your user project").
So a team's attachment lives in the team's project, where only that team creates jobs, and uses the team's subnet
of the host's network ("Provision Shared VPC": instances in service projects "can have network connections in the
shared subnets of the host project"; a Service Project Admin gets Network User on "the whole host project or just
some of its subnets"). Each team's project is attached to the host, and Network User is granted on the team's
own subnet only, never on the host project: one team cannot place anything in another team's range.
The same Vertex AI page also lets a job pass "the full network attachment path" of another project; what Vertex AI
then checks is not documented (README, "A team is a project"): no grant here gives one team anything on another's
project, and the isolation review fails one that does.

Google's statements (searched 2026-12-07; README, "A team is a project"), "Set up a Private Service Connect interface
for ... Agent Platform resources" (https://docs.cloud.google.com/gemini-enterprise-agent-platform/machine-learning/
general/vpc-psc-i-setup), which lists custom training among the resources it covers:
- "In a Shared VPC deployment, create the subnet used for the Network Attachment in the Host Project, then create the
  Private Service Connect Network Attachment in the Service Project." (what `stacks.network` does per team)
- "In the project where you create the network attachment, grant the `compute.networkAdmin` role to the [...] service
  agent of the same project." (the team project's Vertex AI agent, on the team's project: `stacks.network`)
- "If you specify a Shared VPC network for Agent Platform to use and you create a network attachment in a service
  project, then grant the Agent Platform service agent in the service project where you use Agent Platform the
  `compute.networkUser` role to your VPC host project."
The last grant is documented on the host project; here it is on the team's subnet only, the narrower scope Shared VPC
itself offers (Network User on "the whole host project or just some of its subnets", "Provision Shared VPC"). On the
host project it would let every team's agent use every team's subnet, which the isolation review fails. No page says
the subnet-level grant suffices for Vertex AI: if a job fails to attach its PSC interface with a permission error on
the subnet, that is this grant (README says what to do).
"""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google.compute_shared_vpc_host_project import ComputeSharedVpcHostProject
from cdktn_provider_google.compute_shared_vpc_service_project import ComputeSharedVpcServiceProject
from cdktn_provider_google.compute_subnetwork import ComputeSubnetwork
from cdktn_provider_google.compute_subnetwork_iam_member import ComputeSubnetworkIamMember

from stacks.project import Project

NETWORK_USER = "roles/compute.networkUser"   # compute.subnetworks.use (and get): place an address in the subnet


class SharedVpc(Construct):
    def __init__(self, scope: Construct, id: str, *, host: Project) -> None:
        super().__init__(scope, id)
        self.host = host
        self.host_project = ComputeSharedVpcHostProject(self, "host", project=host.project_id)
        self.service_projects: dict[str, ComputeSharedVpcServiceProject] = {}

    def attach(self, team: str, project: Project, subnet: ComputeSubnetwork, region: str) -> None:
        """The team's project as a service project, and its Vertex AI service agent (which attaches the jobs' PSC
        interfaces for that project) a Network User of the team's subnet only."""
        self.service_projects[team] = ComputeSharedVpcServiceProject(
            self, f"service-{team}", host_project=self.host_project.project, service_project=project.project_id)
        ComputeSubnetworkIamMember(
            self, f"network-user-{team}", project=self.host.project_id, region=region,
            subnetwork=subnet.name, role=NETWORK_USER,
            member=project.service_agent("aiplatform.googleapis.com"))

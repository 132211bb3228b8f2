"""Shared VPC: the environment's project hosts the network; each team's project is a service project of it.

Why (README, "Teams"): Vertex AI takes the network attachment "within the region and user project" of the job
(`PscInterfaceConfig.network_attachment`, google-cloud-aiplatform's aiplatform_v1 types; "Use Private Service Connect
interface for Vertex AI Training": set up the network, subnetwork and network attachment "in your user project").
So a team's attachment lives in the team's project, where only that team creates jobs, and uses the team's subnet
of the host's network ("Provision Shared VPC": instances in service projects "can have network connections in the
shared subnets of the host project"; a Service Project Admin gets Network User on "the whole host project or just
some of its subnets"). Each team's project is attached to the host, and Network User is granted on the team's
own subnet only, never on the host project: one team cannot place anything in another team's range.
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

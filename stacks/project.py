"""The project: enabled APIs, the service agents we grant to, and the few project-level roles we allow."""
from __future__ import annotations

from cdktn import TerraformResource
from constructs import Construct
from cdktn_provider_google.data_google_project import DataGoogleProject
from cdktn_provider_google.project_iam_member import ProjectIamMember
from cdktn_provider_google.project_service import ProjectService

# google_project_service_identity exists only in the google-beta provider. It is the one beta resource here, so it
# is written as plain Terraform JSON (same attributes, same provider) instead of loading the google-beta bindings,
# which roughly double synthesis time and memory (make bench).
BETA_PROVIDER = "google-beta"

CORE_APIS = (
    "aiplatform.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
)
PROXY_APIS = (
    "compute.googleapis.com",
    "networkservices.googleapis.com",
    "networksecurity.googleapis.com",
)
PERIMETER_APIS = ("accesscontextmanager.googleapis.com",)
INSPECTION_APIS = ("privateca.googleapis.com",)   # the proxy's TLS inspection CA (an allowlist in proxy mode)

# Roles that may be granted at project level, and only these: everything else is granted on its resource.
PROJECT_ROLES_ALLOWED = frozenset({
    "roles/aiplatform.user",            # submit custom jobs (Vertex has no per-job IAM)
    "roles/logging.logWriter",          # the trainer writes its logs
    "roles/compute.networkAdmin",       # Vertex's service agent attaches the PSC interface
})


class Project(Construct):
    """APIs, service agents, and a guarded `grant_role` for the project-level roles a job needs."""

    def __init__(self, scope: Construct, id: str, *, project_id: str, apis: tuple[str, ...],
                 project_number: str | None) -> None:
        super().__init__(scope, id)
        self.project_id = project_id
        self.services = {
            api: ProjectService(self, api.split(".")[0], project=project_id, service=api,
                                disable_on_destroy=False, disable_dependent_services=False)
            for api in apis
        }
        if project_number is not None:
            self.number = project_number
        else:
            self.number = DataGoogleProject(self, "this", project_id=project_id).number
        self._agents: dict[str, str] = {}

    def service_agent(self, api: str) -> str:
        """The member string of `api`'s service agent, created now (agents are otherwise made lazily)."""
        if api not in self._agents:
            agent = TerraformResource(self, f"agent-{api.split('.')[0]}",
                                      terraform_resource_type="google_project_service_identity",
                                      depends_on=[self.services[api]] if api in self.services else None)
            agent.add_override("project", self.project_id)
            agent.add_override("provider", BETA_PROVIDER)
            agent.add_override("service", api)
            self._agents[api] = agent.get_string_attribute("member")
        return self._agents[api]

    def grant_role(self, member: str, role: str, reason: str, key: str) -> ProjectIamMember:
        """`key` names the grantee in the construct id (an account id, an agent's service): ids stay the same
        whatever order the stack creates things in (a member written as a reference is a token whose text
        depends on that order)."""
        if role not in PROJECT_ROLES_ALLOWED:
            raise ValueError(f"{role} must be granted on its resource, not on the project "
                             f"(project-level roles allowed: {', '.join(sorted(PROJECT_ROLES_ALLOWED))})")
        safe = role.split("/")[-1].replace(".", "-")
        ident = f"{safe}-{key}"
        return ProjectIamMember(self, ident, project=self.project_id, role=role, member=member)


"""The project: enabled APIs, the service agents we grant to, and the few project-level roles we allow."""
from __future__ import annotations

from cdktn import TerraformResource
from constructs import Construct
from cdktn_provider_google.data_google_project import DataGoogleProject
from cdktn_provider_google.project_iam_audit_config import (
    ProjectIamAuditConfig,
    ProjectIamAuditConfigAuditLogConfig,
)
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

# Data Access audit logs, off by default ("Data Access audit logs"), for what reads or mints a team's credentials.
# One google_project_iam_audit_config per (project, service): it is authoritative for its service in the project, so
# it is declared once per project by the project itself (never by a secret or a team, whose removal would take it
# away). Policy HFG012 checks both rows for every project that holds a token secret or an impersonated account.
AUDITED_DATA_ACCESS = (
    # AccessSecretVersion is DATA_READ ("Secret Manager audit logging information"); ADMIN_READ: who listed what.
    ("secretmanager.googleapis.com", ("DATA_READ", "ADMIN_READ")),
    # Minting a service account's tokens (generateAccessToken, signBlob, signJwt: what `hfgate publish` does as the
    # publisher) is logged as Data Access under iamcredentials.googleapis.com, enabled through the IAM API's audit
    # config ("Service Account Credentials audit logging": GenerateAccessToken needs
    # iam.serviceAccounts.getAccessToken, an ADMIN_READ permission, so it writes a Data Access log; "IAM audit
    # logging": enable Data Access audit logs for iam.googleapis.com). ADMIN_READ and DATA_READ both, as the
    # page's versions type the permission differently.
    ("iam.googleapis.com", ("ADMIN_READ", "DATA_READ")),
)

# Roles that may be granted at project level, and only these: everything else is granted on its resource.
PROJECT_ROLES_ALLOWED = frozenset({
    "roles/aiplatform.user",            # submit custom jobs (Vertex has no per-job IAM)
    "roles/logging.logWriter",          # the trainer writes its logs
    "roles/logging.viewer",             # the submitter reads its jobs' logs (hfgate logs)
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
        self.audit: dict[str, ProjectIamAuditConfig] = {}

    def audit_data_access(self, moved_from: dict[str, str] | None = None) -> None:
        """The project's Data Access audit configs (AUDITED_DATA_ACCESS), once: no exemptions. `moved_from`:
        service -> the address a config had before (a `moved` block: Terraform keeps it instead of replacing it)."""
        for service, types in AUDITED_DATA_ACCESS:
            if service in self.audit:
                continue
            self.audit[service] = ProjectIamAuditConfig(
                self, f"audit-{service.split('.')[0]}", project=self.project_id, service=service,
                audit_log_config=[ProjectIamAuditConfigAuditLogConfig(log_type=t) for t in types])
            if moved_from and service in moved_from:
                self.audit[service].move_from_id(moved_from[service])

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


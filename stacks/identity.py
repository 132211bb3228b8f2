"""Service accounts: the trainer (what Vertex jobs run as), the submitter (what CI or a person submits with) and the
publisher (the only reader of the write token; whoever publishes impersonates it)."""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google.service_account import ServiceAccount
from cdktn_provider_google.service_account_iam_member import ServiceAccountIamMember


class Identity(Construct):
    """A user-managed service account without keys. `grant_act_as` lets another identity run jobs as this one."""

    def __init__(self, scope: Construct, id: str, *, project_id: str, account_id: str, display_name: str,
                 description: str) -> None:
        super().__init__(scope, id)
        self.account = ServiceAccount(self, "account", project=project_id, account_id=account_id,
                                      display_name=display_name, description=description)
        self.account_id = account_id
        self.email = self.account.email
        self.member = self.account.member
        self.name = self.account.name

    def grant_act_as(self, principal: "Identity") -> ServiceAccountIamMember:
        return ServiceAccountIamMember(self, f"act-as-{principal.account_id}", service_account_id=self.name,
                                       role="roles/iam.serviceAccountUser", member=principal.member)

    def grant_impersonate(self, principal: "Identity | str") -> ServiceAccountIamMember:
        """Service Account Token Creator on this account only: the principal may mint its access tokens (what
        impersonation with google-auth or `gcloud --impersonate-service-account` does), nothing else."""
        import hashlib
        member = principal if isinstance(principal, str) else principal.member
        key = principal.account_id if isinstance(principal, Identity) else hashlib.sha1(member.encode()).hexdigest()[:10]
        return ServiceAccountIamMember(self, f"token-creator-{key}", service_account_id=self.name,
                                       role="roles/iam.serviceAccountTokenCreator", member=member)

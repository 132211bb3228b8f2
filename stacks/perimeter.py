"""VPC Service Controls perimeter: what turns the egress allowlist from advisory into enforced."""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google.access_context_manager_service_perimeter import (
    AccessContextManagerServicePerimeter,
    AccessContextManagerServicePerimeterStatus,
    AccessContextManagerServicePerimeterStatusVpcAccessibleServices,
)

from stacks.project import Project

RESTRICTED_SERVICES = ("aiplatform.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com")


class ServicePerimeter(Construct):
    def __init__(self, scope: Construct, id: str, *, project: Project, access_policy_id: str, name: str) -> None:
        super().__init__(scope, id)
        self.perimeter = AccessContextManagerServicePerimeter(
            self, "perimeter", parent=f"accessPolicies/{access_policy_id}",
            name=f"accessPolicies/{access_policy_id}/servicePerimeters/{name}",
            title=name, perimeter_type="PERIMETER_TYPE_REGULAR",
            status=AccessContextManagerServicePerimeterStatus(
                resources=[f"projects/{project.number}"],
                restricted_services=list(RESTRICTED_SERVICES),
                vpc_accessible_services=AccessContextManagerServicePerimeterStatusVpcAccessibleServices(
                    enable_restriction=True, allowed_services=list(RESTRICTED_SERVICES))))

"""VPC Service Controls perimeter: what turns the egress allowlist from advisory into enforced.

A perimeter that restricts a service denies every call to it from outside the perimeter unless an ingress policy
or an access level lets it in ("Ingress and egress rules for VPC Service Controls"): that includes Terraform itself,
`hfgate token set` and `hfgate submit` run from a workstation or CI. With teams, the perimeter holds the host project
and every team's project (each team's jobs, secrets and buckets are in its own). So the perimeter carries one ingress policy
for the identities that must reach the project from outside (config `perimeter_ingress_identities`, plus the
submitter), to the restricted services only. Google documents dry-run mode as the first step of a rollout
(`spec` with `use_explicit_dry_run_spec`: violations are logged, nothing is denied); `perimeter_dry_run = true`
writes the same configuration as a dry-run spec and leaves `status` empty, and the outputs contract says the
allowlist is then not enforced (`egress_enforced = false`).
"""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google import access_context_manager_service_perimeter as acm
from cdktn_provider_google.access_context_manager_service_perimeter import AccessContextManagerServicePerimeter

from stacks.facts import AR_DOCKER_READ, TOKEN_PATH_SERVICES
from stacks.project import Project

# The services a path to or from the token depends on (stacks.facts.TOKEN_PATH_SERVICES, each on VPC Service
# Controls' supported products page): the perimeter restricts them all, and the review fails a perimeter that does
# not (review.egress_model.perimeter). Restricting Artifact Registry and images from outside the perimeter
# (stacks.facts.IMAGE_PERIMETER_FACTS): Artifact Registry's page says a project in a perimeter can "access container
# images inside the service perimeter as well as Google-provided images" (said of GKE private clusters), and gives an
# egress rule (DockerRead only) for mirror.gcr.io alone; Vertex AI's page says it "won't be able to reach resources
# outside the perimeter". No page says whether a custom job pulls a Deep Learning Container
# (deeplearning-platform-release) through a perimeter that restricts Artifact Registry, so nothing is opened by
# default: run dry-run first (perimeter_dry_run = true), and before enforcing either copy the image into the
# project's own Artifact Registry (inside the perimeter) or list the registry project a violation names in
# `perimeter_image_projects`, which adds the same DockerRead-only rule Google documents for mirror.gcr.io.
RESTRICTED_SERVICES = tuple(TOKEN_PATH_SERVICES)


class ServicePerimeter(Construct):
    def __init__(self, scope: Construct, id: str, *, projects: list[Project], access_policy_id: str, name: str,
                 ingress_identities: tuple[str, ...], dry_run: bool, image_projects: tuple[str, ...] = ()) -> None:
        super().__init__(scope, id)
        def config(part: str):
            """The perimeter's configuration as the provider's typed blocks (`Status...` enforced, `Spec...`
            dry-run): jsii drops nested blocks written as plain dicts."""
            def block(name: str, **kw):
                return getattr(acm, f"AccessContextManagerServicePerimeter{part}{name}")(**kw)
            return block(
                "", resources=[f"projects/{p.number}" for p in projects], restricted_services=list(RESTRICTED_SERVICES),
                vpc_accessible_services=block("VpcAccessibleServices", enable_restriction=True,
                                              allowed_services=list(RESTRICTED_SERVICES)),
                ingress_policies=[block(
                    "IngressPolicies",
                    ingress_from=block("IngressPoliciesIngressFrom", identities=sorted(set(ingress_identities)),
                                       sources=[block("IngressPoliciesIngressFromSources", access_level="*")]),
                    ingress_to=block("IngressPoliciesIngressTo", resources=["*"], operations=[
                        block("IngressPoliciesIngressToOperations", service_name=svc, method_selectors=[
                            block("IngressPoliciesIngressToOperationsMethodSelectors", method="*")])
                        for svc in RESTRICTED_SERVICES]))],
                # Image pulls from registry projects outside (config perimeter_image_projects): Artifact Registry's
                # DockerRead only, to the projects named, in the shape of Google's documented mirror.gcr.io rule.
                egress_policies=[block(
                    "EgressPolicies",
                    egress_from=block("EgressPoliciesEgressFrom", identity_type="ANY_IDENTITY"),
                    egress_to=block("EgressPoliciesEgressTo", resources=[proj], operations=[
                        block("EgressPoliciesEgressToOperations", service_name="artifactregistry.googleapis.com",
                              method_selectors=[block("EgressPoliciesEgressToOperationsMethodSelectors",
                                                      method=AR_DOCKER_READ)])]))
                    for proj in image_projects] or None)
        self.dry_run = dry_run
        self.enforced = not dry_run      # `status` set: the outputs contract's egress_enforced follows it
        self.perimeter = AccessContextManagerServicePerimeter(
            self, "perimeter", parent=f"accessPolicies/{access_policy_id}",
            name=f"accessPolicies/{access_policy_id}/servicePerimeters/{name}",
            title=name, perimeter_type="PERIMETER_TYPE_REGULAR",
            spec=config("Spec") if dry_run else None, status=None if dry_run else config("Status"),
            use_explicit_dry_run_spec=True if dry_run else None)

"""One environment's stack: composes the constructs and exports the outputs contract."""
from __future__ import annotations

from constructs import Construct
from cdktn import GcsBackend, LocalBackend, TerraformOutput, TerraformResource, TerraformStack
from cdktn_provider_google.provider import GoogleProvider

from stacks.config import EgressMode, Settings
from stacks.contract import CONTRACT_VERSION, FIELDS
from stacks.facts import HF_HOST_RULES, api_for
from stacks.naming import names_for
from stacks.network import HfEgressNetwork
from stacks.perimeter import ServicePerimeter
from stacks.project import BETA_PROVIDER, CORE_APIS, INSPECTION_APIS, PERIMETER_APIS, PROXY_APIS, Project
from stacks.storage import Bucket
from stacks.team import TeamResources


def stack_name(env: str) -> str:
    return f"hfgate-{env}"


class HfgateStack(TerraformStack):
    def __init__(self, scope: Construct, settings: Settings) -> None:
        super().__init__(scope, stack_name(settings.env))
        s = settings
        names = names_for(s)
        labels = {"managed-by": "hfgate", "hfgate-env": s.env, **s.labels}
        if s.state_bucket:
            GcsBackend(self, bucket=s.state_bucket, prefix=f"hfgate/{s.env}")
        else:
            LocalBackend(self, path=f"terraform.{stack_name(s.env)}.tfstate")
        google = GoogleProvider(self, "google", project=s.project_id, region=s.region, default_labels=labels,
                                add_terraform_attribution_label=True)
        # google-beta, for the service identities only (stacks.project), declared without its bindings.
        self.add_override(f"terraform.required_providers.{BETA_PROVIDER}", {
            "source": "hashicorp/google-beta", "version": google.terraform_generator_metadata.provider_version})
        self.add_override(f"provider.{BETA_PROVIDER}", [{"project": s.project_id, "region": s.region}])

        proxy = s.egress_mode is EgressMode.PROXY
        scoped = proxy and bool(s.allow_models or s.allow_datasets
                                or any(t.allow_models or t.allow_datasets for t in s.teams))
        apis = (CORE_APIS + (PROXY_APIS if proxy else ()) + (INSPECTION_APIS if scoped else ())
                + (PERIMETER_APIS if s.access_policy_id else ()))
        self.project = Project(self, "project", project_id=s.project_id, apis=apis,
                               project_number=s.project_number)
        # A team is a project (README, "Teams"): its own, existing project, a Shared VPC service project of this
        # one. Declared at the stack's root, not in the team's scope: what belongs to a project (its APIs, its
        # audit configs) is declared once per project.
        team_apis = CORE_APIS + (("compute.googleapis.com",) if proxy else ())
        self.projects: dict[str, Project] = {"": self.project} | {
            t.name: Project(self, f"project-{t.name}", project_id=t.project_id, apis=team_apis,
                            project_number=t.project_number) for t in s.teams}

        # Under CMEK, each bucket waits for the Cloud Storage agent's grant on the key (else the first apply fails
        # with a permission error on the key). Vertex AI's agent gets the key too: jobs carry encryption_spec.
        # No `moved` block from the audit config's earlier address: nothing has been applied from these stacks, and
        # checkov's terraform_json parser cannot read one (it skipped the whole template, passing nothing).
        # Each project's agents get the key: its buckets' (Cloud Storage) and its jobs' (Vertex AI).
        deps_of: dict[str, list | None] = {key: None for key in self.projects}
        if s.kms_key:
            from cdktn_provider_google.data_google_storage_project_service_account import (
                DataGoogleStorageProjectServiceAccount,
            )
            from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
            for key, proj in self.projects.items():
                sfx = f"-{key}" if key else ""
                gcs_agent = DataGoogleStorageProjectServiceAccount(self, f"gcs-agent{sfx}", project=proj.project_id)
                deps_of[key] = [KmsCryptoKeyIamMember(self, f"cmek-storage{sfx}", crypto_key_id=s.kms_key,
                                                      role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                                      member=gcs_agent.member)]
                KmsCryptoKeyIamMember(self, f"cmek-aiplatform{sfx}", crypto_key_id=s.kms_key,
                                      role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                      member=proj.service_agent("aiplatform.googleapis.com"))
        bucket_deps = deps_of[""]
        self.logs = Bucket(self, "logs-bucket", project_id=s.project_id, name=names.logs_bucket,
                           location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=None,
                           expire_after_days=365, depends_on=bucket_deps)
        self.logs.grant_usage_log_delivery()
        # The teams: one implicit team at the stack's root, or one scope per [teams.NAME] (stacks.team).
        self.teams: dict[str, TeamResources] = {}
        first: TeamResources | None = None
        for team in s.teams or (None,):
            key = team.name if team else ""
            scope = Construct(self, f"team-{team.name}") if team else self
            # Secrets of one project share its agents' key grants (the first secret makes them); each team's
            # project has agents of its own.
            res = TeamResources(scope, settings=s, names=names_for(s, team.name if team else None),
                                project=self.projects[key], labels=labels, logs=self.logs,
                                bucket_deps=deps_of[key], team=team,
                                shared_kms_grants=None if team else first)
            first = first or res
            self.teams[key] = res
        if not s.teams:      # the names the rest of the stack and older code know
            t = self.teams[""]
            self.trainer, self.submitter, self.publisher = t.trainer, t.submitter, t.publisher
            self.token, self.write_token = t.token, t.write_token
            self.staging, self.artifacts, self.mirror = t.staging, t.artifacts, t.mirror

        attachments: dict[str, str] = {}
        proxy_url = ca_certificate = ""
        perimeter: ServicePerimeter | None = None
        if proxy:
            net = HfEgressNetwork(self, "egress", project=self.project, region=s.region, names=names,
                                  subnet_cidr=s.subnet_cidr, proxy_only_cidr=s.proxy_only_cidr,
                                  host_rules=HF_HOST_RULES, labels=labels, allow_models=s.allow_models,
                                  allow_datasets=s.allow_datasets, teams=s.teams,
                                  team_names={t.name: names_for(s, t.name) for t in s.teams},
                                  team_projects={t.name: self.projects[t.name] for t in s.teams},
                                  any_method=s.hub_methods == "any")
            attachments = {k: a.id for k, a in net.attachments.items()}
            proxy_url, ca_certificate = net.proxy_url, net.ca_certificate
            if s.access_policy_id:
                own = tuple(f"serviceAccount:{t.names.email(acct, t.project_id)}" for t in self.teams.values()
                            for acct in (t.names.submitter_account_id, t.names.publisher_account_id))
                # One perimeter around the host and every team's project: jobs, secrets and buckets are inside it.
                perimeter = ServicePerimeter(self, "perimeter", projects=list(self.projects.values()),
                                             access_policy_id=s.access_policy_id,
                                             name=names.perimeter, dry_run=s.perimeter_dry_run,
                                             ingress_identities=s.perimeter_ingress_identities + own,
                                             image_projects=s.perimeter_image_projects)

        self._depend_on_apis()
        for key, t in self.teams.items():
            team = t.team
            values = {
                "contract_version": CONTRACT_VERSION,
                "env": s.env,
                "team": key,
                "project_id": t.project_id,
                "project_number": t.project.number,
                "host_project_id": s.project_id,
                "region": s.region,
                "token_secret": t.token.resource_id,
                "trainer_email": t.trainer.email,
                "submitter_email": t.submitter.email,
                "write_token_secret": t.write_token.resource_id,
                "publisher_email": t.publisher.email,
                "publishers": t.publisher_members(),
                "submitters": list(team.submitters if team else ()),
                "staging_bucket": t.staging.url,
                "artifacts_bucket": t.artifacts.url,
                "mirror_bucket": t.mirror.url,
                "egress_mode": s.egress_mode.value,
                # The perimeter's real state (enforced, not dry-run); the review checks it against the plan's.
                "egress_enforced": bool(perimeter and perimeter.enforced),
                "network_attachment": attachments.get(key, ""),
                "proxy_url": proxy_url,
                "hf_host_rules": list(HF_HOST_RULES),
                "training_image": s.training_image,
                "machine_type": s.job_machine(team)[0],
                "accelerator_type": s.job_machine(team)[1],
                "accelerator_count": s.job_machine(team)[2],
                "allowed_models": list(team.allow_models if team else s.allow_models),
                "allowed_datasets": list(team.allow_datasets if team else s.allow_datasets),
                "proxy_ca_certificate": ca_certificate,
                "trusted_image_registries": list(s.trusted_registries),
                "kms_key": s.kms_key or "",
            }
            assert tuple(values) == FIELDS, "outputs and the contract must list the same fields"
            if not s.teams:
                for k, value in values.items():
                    TerraformOutput(self, k, value=value, static_id=True)
            else:   # one object per team: `--team NAME` (or HFGATE_TEAM) picks it from the outputs file
                TerraformOutput(self, f"team_{key}", value=values, static_id=True)

    def _depend_on_apis(self) -> None:
        """Every resource of an API this stack enables waits for that API (stacks.facts.api_for), so a first
        apply on a bare project does not race the enablement (Google's "API not enabled" 403s need a second run).
        A resource waits for the API of its own project: a team's for what lives there, the host's otherwise."""
        by_id = {p.project_id: p for p in self.projects.values()}
        for node in self.node.find_all():
            if not isinstance(node, TerraformResource):
                continue
            api = api_for(node.terraform_resource_type)
            # The project the resource names (a Shared VPC service project's attachment: the team's), else the
            # team whose scope holds it, else the host.
            owner = next((by_id[v] for a in ("project_input", "service_project_input")
                          if isinstance(v := getattr(node, a, None), str) and v in by_id), self.project)
            team_scope = next((p for k, p in self.projects.items()
                               if k and f"/team-{k}/" in f"{node.node.path}/"), None)
            owner = team_scope if owner is self.project and team_scope is not None else owner
            service = owner.services.get(api) if api else None
            if service is None or node is service:
                continue
            current = list(node.depends_on or [])
            wanted = f"{service.terraform_resource_type}.{service.friendly_unique_id}"
            if wanted not in current:
                node.depends_on = current + [wanted]

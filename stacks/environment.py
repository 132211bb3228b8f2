"""One environment's stack: composes the constructs and exports the outputs contract."""
from __future__ import annotations

from constructs import Construct
from cdktn import GcsBackend, LocalBackend, TerraformOutput, TerraformResource, TerraformStack
from cdktn_provider_google.provider import GoogleProvider

from stacks.config import EgressMode, Settings
from stacks.contract import CONTRACT_VERSION, FIELDS
from stacks.facts import HF_HOST_RULES, api_for
from stacks.identity import Identity
from stacks.naming import names_for
from stacks.network import HfEgressNetwork
from stacks.perimeter import ServicePerimeter
from stacks.project import BETA_PROVIDER, CORE_APIS, INSPECTION_APIS, PERIMETER_APIS, PROXY_APIS, Project
from stacks.secret import TokenSecret
from stacks.storage import Bucket

STAGING_EXPIRY_DAYS = 14


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
        scoped = proxy and bool(s.allow_models or s.allow_datasets)
        apis = (CORE_APIS + (PROXY_APIS if proxy else ()) + (INSPECTION_APIS if scoped else ())
                + (PERIMETER_APIS if s.access_policy_id else ()))
        self.project = Project(self, "project", project_id=s.project_id, apis=apis,
                               project_number=s.project_number)

        self.trainer = Identity(self, "trainer", project_id=s.project_id, account_id=names.trainer_account_id,
                                display_name="hfgate trainer",
                                description="Runs Vertex AI training jobs; reads the Hugging Face token")
        self.submitter = Identity(self, "submitter", project_id=s.project_id,
                                  account_id=names.submitter_account_id, display_name="hfgate submitter",
                                  description="Checks the token and submits training jobs as the trainer")

        self.token = TokenSecret(self, "hf-token", project=self.project, secret_id=names.secret_id,
                                 replicas=s.replicas, rotation_days=s.token_rotation_days,
                                 rotation_topic=names.rotation_topic, labels=labels, kms_key=s.kms_key,
                                 replica_keys=s.replica_keys, write_only_version=s.token_write_only)
        self.token.grant_read(self.trainer)    # the job's bootstrap reads the pinned version
        self.token.grant_read(self.submitter)  # preflight reads it at submit time

        # Publishing (`hfgate publish`) uses a write token of its own, read by one account that can do nothing
        # else; whoever publishes impersonates it. Not the submitter itself: CI that trains (and can act as the
        # trainer, whose code is whatever the job runs) would then hold a token that writes to the organization.
        self.publisher = Identity(self, "publisher", project_id=s.project_id,
                                  account_id=names.publisher_account_id, display_name="hfgate publisher",
                                  description="Reads the Hugging Face write token; impersonated by hfgate publish")
        self.write_token = TokenSecret(self, "hf-write-token", project=self.project, secret_id=names.write_secret_id,
                                       replicas=s.replicas, rotation_days=s.token_rotation_days,
                                       rotation_topic=names.write_rotation_topic, labels=labels, kms_key=s.kms_key,
                                       replica_keys=s.replica_keys, purpose="hugging-face-write-token",
                                       set_with="hfgate token set --kind write --env ...", audit_reads=False,
                                       grants_from=self.token)
        self.write_token.grant_read(self.publisher)
        for who in s.publishers:
            self.publisher.grant_impersonate(self.submitter if who == "submitter" else who)

        # Under CMEK, each bucket waits for the Cloud Storage agent's grant on the key (else the first apply fails
        # with a permission error on the key). Vertex AI's agent gets the key too: jobs carry encryption_spec.
        bucket_deps = None
        if s.kms_key:
            from cdktn_provider_google.data_google_storage_project_service_account import (
                DataGoogleStorageProjectServiceAccount,
            )
            from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
            gcs_agent = DataGoogleStorageProjectServiceAccount(self, "gcs-agent", project=s.project_id)
            bucket_deps = [KmsCryptoKeyIamMember(self, "cmek-storage", crypto_key_id=s.kms_key,
                                                 role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                                 member=gcs_agent.member)]
            KmsCryptoKeyIamMember(self, "cmek-aiplatform", crypto_key_id=s.kms_key,
                                  role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                  member=self.project.service_agent("aiplatform.googleapis.com"))
        self.logs = Bucket(self, "logs-bucket", project_id=s.project_id, name=names.logs_bucket,
                           location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=None,
                           expire_after_days=365, depends_on=bucket_deps)
        self.logs.grant_usage_log_delivery()
        self.staging = Bucket(self, "staging-bucket", project_id=s.project_id, name=names.staging_bucket,
                              location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=self.logs,
                              expire_after_days=STAGING_EXPIRY_DAYS, depends_on=bucket_deps)
        self.artifacts = Bucket(self, "artifacts-bucket", project_id=s.project_id, name=names.artifacts_bucket,
                                location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=self.logs,
                                soft_delete_days=30, depends_on=bucket_deps)
        # Mirrors are read by jobs and written only by whoever runs `hfgate mirror`: a job (any code in the
        # container) must not be able to change what the next job trains from.
        self.mirror = Bucket(self, "mirror-bucket", project_id=s.project_id, name=names.mirror_bucket,
                             location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=self.logs,
                             soft_delete_days=30, depends_on=bucket_deps)
        self.staging.grant_write(self.submitter)
        self.staging.grant_read(self.trainer)
        self.artifacts.grant_write(self.trainer)    # outputs and checkpoints
        self.artifacts.grant_read(self.submitter)   # results, for whoever submitted
        self.mirror.grant_write(self.submitter)     # `hfgate mirror` uploads models and datasets
        self.mirror.grant_read(self.trainer)

        self.trainer.grant_act_as(self.submitter)
        self.project.grant_role(self.submitter.member, "roles/aiplatform.user", "submit custom jobs")
        self.project.grant_role(self.trainer.member, "roles/logging.logWriter", "job logs")

        attachment = proxy_url = ca_certificate = ""
        if proxy:
            net = HfEgressNetwork(self, "egress", project=self.project, region=s.region, names=names,
                                  subnet_cidr=s.subnet_cidr, proxy_only_cidr=s.proxy_only_cidr,
                                  host_rules=HF_HOST_RULES, labels=labels, allow_models=s.allow_models,
                                  allow_datasets=s.allow_datasets)
            attachment, proxy_url, ca_certificate = net.attachment.id, net.proxy_url, net.ca_certificate
            if s.access_policy_id:
                ServicePerimeter(self, "perimeter", project=self.project, access_policy_id=s.access_policy_id,
                                 name=names.perimeter, dry_run=s.perimeter_dry_run,
                                 ingress_identities=s.perimeter_ingress_identities + (
                                     f"serviceAccount:{names.email(names.submitter_account_id, s.project_id)}",
                                     f"serviceAccount:{names.email(names.publisher_account_id, s.project_id)}"))

        values = {
            "contract_version": CONTRACT_VERSION,
            "env": s.env,
            "project_id": s.project_id,
            "project_number": self.project.number,
            "region": s.region,
            "token_secret": self.token.resource_id,
            "trainer_email": self.trainer.email,
            "submitter_email": self.submitter.email,
            "write_token_secret": self.write_token.resource_id,
            "publisher_email": self.publisher.email,
            "publishers": [f"serviceAccount:{names.email(names.submitter_account_id, s.project_id)}"
                           if p == "submitter" else p for p in s.publishers],
            "staging_bucket": self.staging.url,
            "artifacts_bucket": self.artifacts.url,
            "mirror_bucket": self.mirror.url,
            "egress_mode": s.egress_mode.value,
            "egress_enforced": s.egress_enforced,
            "network_attachment": attachment,
            "proxy_url": proxy_url,
            "hf_host_rules": list(HF_HOST_RULES),
            "training_image": s.training_image,
            "machine_type": s.machine_type,
            "accelerator_type": s.accelerator_type or "",
            "accelerator_count": s.accelerator_count,
            "allowed_models": list(s.allow_models),
            "allowed_datasets": list(s.allow_datasets),
            "proxy_ca_certificate": ca_certificate,
            "trusted_image_registries": list(s.trusted_registries),
            "kms_key": s.kms_key or "",
        }
        assert tuple(values) == FIELDS, "outputs and the contract must list the same fields"
        self._depend_on_apis()
        for key, value in values.items():
            out = TerraformOutput(self, key, value=value, static_id=True)
            del out

    def _depend_on_apis(self) -> None:
        """Every resource of an API this stack enables waits for that API (stacks.facts.api_for), so a first
        apply on a bare project does not race the enablement (Google's "API not enabled" 403s need a second run)."""
        for node in self.node.find_all():
            if not isinstance(node, TerraformResource):
                continue
            api = api_for(node.terraform_resource_type)
            service = self.project.services.get(api) if api else None
            if service is None or node is service:
                continue
            current = list(node.depends_on or [])
            wanted = f"{service.terraform_resource_type}.{service.friendly_unique_id}"
            if wanted not in current:
                node.depends_on = current + [wanted]

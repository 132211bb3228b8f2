"""The Hugging Face token secrets. The stack creates the containers only: values never enter state or cdk.tf.json.

Two per environment: the read token (training: the submitter's preflight and the trainer's bootstrap read it) and
the write token (publishing: only the publisher account reads it; `hfgate publish` impersonates it).

Versions are added out of band (`hfgate token set`). Teams that want the value managed by IaC can opt into a
write-only version (`secret_data_wo`, Terraform >= 1.11), fed by an ephemeral variable: kept out of plan and state.
"""
from __future__ import annotations

from constructs import Construct
from cdktn import Fn, TerraformResourceLifecycle, TerraformVariable
from cdktn_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from cdktn_provider_google.pubsub_topic import PubsubTopic
from cdktn_provider_google.pubsub_topic_iam_member import PubsubTopicIamMember
from cdktn_provider_google.secret_manager_secret import (
    SecretManagerSecret,
    SecretManagerSecretReplication,
    SecretManagerSecretReplicationUserManaged,
    SecretManagerSecretReplicationUserManagedReplicas,
    SecretManagerSecretReplicationUserManagedReplicasCustomerManagedEncryption,
    SecretManagerSecretRotation,
    SecretManagerSecretTopics,
)
from cdktn_provider_google.secret_manager_secret_iam_member import SecretManagerSecretIamMember
from cdktn_provider_google.secret_manager_secret_version import SecretManagerSecretVersion

from stacks.identity import Identity
from stacks.project import Project

ACCESSOR_ROLE = "roles/secretmanager.secretAccessor"


class TokenSecret(Construct):
    def __init__(self, scope: Construct, id: str, *, project: Project, secret_id: str, replicas: tuple[str, ...],
                 rotation_days: int, rotation_topic: str, labels: dict[str, str], kms_key: str | None,
                 replica_keys: dict[str, str] | None = None, write_only_version: bool = False,
                 purpose: str = "hugging-face-token", set_with: str = "hfgate token set --env ...",
                 grants_from: "TokenSecret | None" = None) -> None:
        super().__init__(scope, id)
        project.audit_data_access()
        agent = project.service_agent("secretmanager.googleapis.com")
        self.topic = PubsubTopic(self, "rotation-topic", project=project.project_id, name=rotation_topic,
                                 labels=labels, kms_key_name=kms_key,
                                 message_retention_duration="604800s")
        publisher = PubsubTopicIamMember(self, "rotation-publisher", project=project.project_id,
                                         topic=self.topic.name, role="roles/pubsub.publisher", member=agent)
        depends = [publisher]
        replica_keys = replica_keys or {}
        # A second secret of the project (grants_from) shares the first one's key grants: one IAM member resource
        # per (key, role, agent), or destroying either would remove the other's grant.
        if kms_key and grants_from is not None:
            depends += grants_from.kms_grants
            self.topic.depends_on = list(self.topic.depends_on or []) + list(grants_from.topic.depends_on or [])
        self.kms_grants: list = []
        if kms_key and grants_from is None:
            # Secret Manager's agent encrypts each replica with that replica's key (CMEK; the key must be in the
            # replica's location); Pub/Sub's encrypts the topic. Resources under CMEK wait for their agent's grant.
            for i, key in enumerate(sorted(set(replica_keys.values()) | {kms_key})):
                self.kms_grants.append(KmsCryptoKeyIamMember(
                    self, "cmek-secretmanager" if key == kms_key else f"cmek-secretmanager-{i}", crypto_key_id=key,
                    role="roles/cloudkms.cryptoKeyEncrypterDecrypter", member=agent))
            depends += self.kms_grants
            pubsub_grant = KmsCryptoKeyIamMember(self, "cmek-pubsub", crypto_key_id=kms_key,
                                                 role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
                                                 member=project.service_agent("pubsub.googleapis.com"))
            self.topic.depends_on = list(self.topic.depends_on or []) + [
                f"{pubsub_grant.terraform_resource_type}.{pubsub_grant.friendly_unique_id}"]

        def cmek(loc: str):
            key = replica_keys.get(loc) or kms_key
            return (SecretManagerSecretReplicationUserManagedReplicasCustomerManagedEncryption(kms_key_name=key)
                    if key else None)
        period_s = rotation_days * 86400
        self.secret = SecretManagerSecret(
            self, "secret",
            project=project.project_id,
            secret_id=secret_id,
            labels=labels,
            # Annotation keys: 1-63 characters, alphanumeric at both ends, only - _ . inside (Secret.annotations).
            annotations={"hfgate-purpose": purpose, "hfgate-set-with": f"{set_with} (never terraform)"},
            replication=SecretManagerSecretReplication(user_managed=SecretManagerSecretReplicationUserManaged(
                replicas=[SecretManagerSecretReplicationUserManagedReplicas(location=loc,
                                                                            customer_managed_encryption=cmek(loc))
                          for loc in replicas])),
            topics=[SecretManagerSecretTopics(name=self.topic.id)],
            # A reminder only: Secret Manager publishes SECRET_ROTATE; people rotate with `hfgate token rotate`.
            rotation=SecretManagerSecretRotation(
                rotation_period=f"{period_s}s",
                next_rotation_time=Fn.timeadd(Fn.plantimestamp(), f"{rotation_days * 24}h")),
            deletion_protection=True,
            version_destroy_ttl="86400s",
            depends_on=depends,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["rotation[0].next_rotation_time"]),
        )
        # Reads of the token are Data Access events, logged by the project's own audit config (Project
        # .audit_data_access: one per project, not one per secret or team; policy HFG012).
        self.id_ = secret_id
        self.name = self.secret.name          # projects/{number}/secrets/{id} after apply
        self.resource_id = self.secret.id     # projects/{project}/secrets/{id}
        if write_only_version:
            token = TerraformVariable(self, "hf_token", type="string", sensitive=True, nullable=False,
                                      description="Hugging Face token; write-only: never stored in plan or state")
            token.add_override("ephemeral", True)
            # The provider types secret_data_wo_version as a string (an integer in text): bump it to write again.
            token_version = TerraformVariable(self, "hf_token_version", type="string", default="1",
                                              description="bump (1, 2, ...) to write a new token version")
            SecretManagerSecretVersion(self, "version", secret=self.secret.id,
                                       secret_data_wo=token.string_value,
                                       secret_data_wo_version=token_version.string_value)

    def grant_read(self, identity: Identity) -> SecretManagerSecretIamMember:
        """secretAccessor on this one secret, never on the project."""
        return SecretManagerSecretIamMember(self, f"accessor-{identity.account_id}", project=self.secret.project,
                                            secret_id=self.secret.secret_id, role=ACCESSOR_ROLE,
                                            member=identity.member)

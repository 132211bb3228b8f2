"""Hardened Cloud Storage buckets with resource-scoped grants."""
from __future__ import annotations

from constructs import Construct
from cdktn_provider_google.storage_bucket import (
    StorageBucket,
    StorageBucketEncryption,
    StorageBucketLifecycleRule,
    StorageBucketLifecycleRuleAction,
    StorageBucketLifecycleRuleCondition,
    StorageBucketLogging,
    StorageBucketSoftDeletePolicy,
    StorageBucketVersioning,
)
from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember

from stacks.identity import Identity

READ_ROLE = "roles/storage.objectViewer"
WRITE_ROLE = "roles/storage.objectUser"   # read, create, overwrite, delete objects; no IAM or bucket admin
USAGE_LOG_WRITER = "group:cloud-storage-analytics@google.com"


class Bucket(Construct):
    """Uniform access, public access prevention enforced, versioning, soft delete, optional CMEK and expiry."""

    def __init__(self, scope: Construct, id: str, *, project_id: str, name: str, location: str,
                 labels: dict[str, str], kms_key: str | None, log_bucket: "Bucket | None",
                 expire_after_days: int | None = None, soft_delete_days: int = 7, depends_on=None) -> None:
        super().__init__(scope, id)
        rules = []
        if expire_after_days:
            rules.append(StorageBucketLifecycleRule(
                action=StorageBucketLifecycleRuleAction(type="Delete"),
                condition=StorageBucketLifecycleRuleCondition(age=expire_after_days)))
            # Versioning keeps noncurrent copies: expire those too, or staging grows forever.
            rules.append(StorageBucketLifecycleRule(
                action=StorageBucketLifecycleRuleAction(type="Delete"),
                condition=StorageBucketLifecycleRuleCondition(days_since_noncurrent_time=expire_after_days)))
        self.bucket = StorageBucket(
            self, "bucket",
            project=project_id,
            name=name,
            location=location.upper(),
            labels=labels,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=StorageBucketVersioning(enabled=True),
            soft_delete_policy=StorageBucketSoftDeletePolicy(retention_duration_seconds=soft_delete_days * 86400),
            encryption=StorageBucketEncryption(default_kms_key_name=kms_key) if kms_key else None,
            logging=StorageBucketLogging(log_bucket=log_bucket.bucket.name) if log_bucket else None,
            lifecycle_rule=rules or None,
            force_destroy=False,
            depends_on=depends_on,
        )
        self.name = name
        self.url = f"gs://{name}"

    def grant_read(self, identity: Identity) -> StorageBucketIamMember:
        return StorageBucketIamMember(self, f"read-{identity.account_id}", bucket=self.bucket.name,
                                      role=READ_ROLE, member=identity.member)

    def grant_usage_log_delivery(self) -> StorageBucketIamMember:
        """Usage logs are written by Google's cloud-storage-analytics@google.com group, which needs object-create
        on the log bucket ("Usage logs & storage logs": set bucket permissions)."""
        return StorageBucketIamMember(self, "usage-log-writer", bucket=self.bucket.name,
                                      role="roles/storage.objectCreator", member=USAGE_LOG_WRITER)

    def grant_write(self, identity: Identity) -> StorageBucketIamMember:
        return StorageBucketIamMember(self, f"write-{identity.account_id}", bucket=self.bucket.name,
                                      role=WRITE_ROLE, member=identity.member)

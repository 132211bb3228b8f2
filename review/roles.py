"""Facts: which permissions that matter to the token each predefined role holds.

One table, judged by permissions rather than role names, so a custom role is read the same way (from its own
permission list). Only the permissions below are listed for each role (a role holds many others that cannot reach
the token); a role missing from the table is UNKNOWN to the review, never assumed harmless. Sources: Google Cloud's
IAM "roles and permissions" reference for each service (Secret Manager, IAM, Resource Manager, Cloud Storage,
Vertex AI, Artifact Registry).
"""
from __future__ import annotations

# Reads the token.
ACCESS = "secretmanager.versions.access"
# Replaces, revives or destroys token versions: integrity, not confidentiality.
VERSION_TAMPER = frozenset({"secretmanager.versions.add", "secretmanager.versions.enable",
                            "secretmanager.versions.disable", "secretmanager.versions.destroy"})
# Changes who may read: on the secret, or on anything above it.
SECRET_SET_IAM = "secretmanager.secrets.setIamPolicy"
HIERARCHY_SET_IAM = frozenset({"resourcemanager.projects.setIamPolicy", "resourcemanager.folders.setIamPolicy",
                               "resourcemanager.organizations.setIamPolicy"})
ROLE_UPDATE = "iam.roles.update"         # edits custom roles, including one the editor itself holds
# Becomes a service account: run a job as it, mint its tokens, sign as it, make it a key, or grant itself those.
ACT_AS = "iam.serviceAccounts.actAs"
IMPERSONATE = frozenset({ACT_AS, "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.signBlob",
                         "iam.serviceAccounts.signJwt", "iam.serviceAccounts.implicitDelegation",
                         "iam.serviceAccountKeys.create", "iam.serviceAccounts.setIamPolicy"})
# Writes what a job reads as code or trusts: objects in the staging bucket, images in the training repository.
OBJECT_WRITE = frozenset({"storage.objects.create", "storage.buckets.setIamPolicy"})
IMAGE_WRITE = frozenset({"artifactregistry.repositories.uploadArtifacts", "artifactregistry.repositories.setIamPolicy"})
# Reads a job's spec, which holds HF_TOKEN for --token-delivery env jobs.
JOB_READ = "aiplatform.customJobs.get"

RELEVANT = frozenset({ACCESS, SECRET_SET_IAM, ROLE_UPDATE, JOB_READ}) | VERSION_TAMPER | HIERARCHY_SET_IAM | \
    IMPERSONATE | OBJECT_WRITE | IMAGE_WRITE

_SECRET_ADMIN = {ACCESS, SECRET_SET_IAM, *VERSION_TAMPER}
_ALL = set(RELEVANT)
_NONE: set[str] = set()

PREDEFINED: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "roles/owner": _ALL,
    "roles/editor": {ACCESS, *VERSION_TAMPER, ACT_AS, "iam.serviceAccountKeys.create", "storage.objects.create",
                     "artifactregistry.repositories.uploadArtifacts", JOB_READ, ROLE_UPDATE},
    "roles/viewer": {JOB_READ},
    "roles/browser": _NONE,
    # Secret Manager
    "roles/secretmanager.admin": _SECRET_ADMIN,
    "roles/secretmanager.secretAccessor": {ACCESS},
    "roles/secretmanager.secretVersionManager": VERSION_TAMPER,
    "roles/secretmanager.secretVersionAdder": {"secretmanager.versions.add"},
    "roles/secretmanager.viewer": _NONE,
    # IAM
    "roles/iam.serviceAccountUser": {ACT_AS},
    "roles/iam.serviceAccountTokenCreator": {"iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.signBlob",
                                             "iam.serviceAccounts.signJwt", "iam.serviceAccounts.implicitDelegation"},
    "roles/iam.workloadIdentityUser": {"iam.serviceAccounts.getAccessToken"},
    "roles/iam.serviceAccountKeyAdmin": {"iam.serviceAccountKeys.create"},
    "roles/iam.serviceAccountAdmin": {"iam.serviceAccounts.setIamPolicy"},
    "roles/iam.serviceAccountViewer": _NONE,
    "roles/iam.securityAdmin": {*HIERARCHY_SET_IAM, SECRET_SET_IAM, "iam.serviceAccounts.setIamPolicy",
                                "storage.buckets.setIamPolicy", "artifactregistry.repositories.setIamPolicy"},
    "roles/iam.securityReviewer": _NONE,
    "roles/iam.roleAdmin": {ROLE_UPDATE},
    "roles/iam.organizationRoleAdmin": {ROLE_UPDATE},
    "roles/iam.roleViewer": _NONE,
    # Resource Manager
    "roles/resourcemanager.projectIamAdmin": {"resourcemanager.projects.setIamPolicy"},
    "roles/resourcemanager.folderIamAdmin": {"resourcemanager.folders.setIamPolicy"},
    "roles/resourcemanager.folderAdmin": {"resourcemanager.folders.setIamPolicy",
                                          "resourcemanager.projects.setIamPolicy"},
    "roles/resourcemanager.organizationAdmin": HIERARCHY_SET_IAM,
    # Cloud Storage
    "roles/storage.admin": {"storage.objects.create", "storage.buckets.setIamPolicy"},
    "roles/storage.objectAdmin": {"storage.objects.create"},
    "roles/storage.objectUser": {"storage.objects.create"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectViewer": _NONE,
    "roles/storage.legacyBucketOwner": {"storage.objects.create", "storage.buckets.setIamPolicy"},
    "roles/storage.legacyBucketWriter": {"storage.objects.create"},
    "roles/storage.legacyBucketReader": _NONE,
    "roles/storage.legacyObjectReader": _NONE,
    "roles/storage.legacyObjectOwner": _NONE,
    # Vertex AI
    "roles/aiplatform.admin": {JOB_READ},
    "roles/aiplatform.user": {JOB_READ},
    "roles/aiplatform.viewer": {JOB_READ},
    # Artifact Registry
    "roles/artifactregistry.admin": IMAGE_WRITE,
    "roles/artifactregistry.repoAdmin": {"artifactregistry.repositories.uploadArtifacts"},
    "roles/artifactregistry.writer": {"artifactregistry.repositories.uploadArtifacts"},
    "roles/artifactregistry.reader": _NONE,
    # Roles the stacks grant, or that are common beside them, holding none of the permissions above.
    "roles/logging.logWriter": _NONE,
    "roles/logging.viewer": _NONE,
    "roles/monitoring.metricWriter": _NONE,
    "roles/monitoring.viewer": _NONE,
    "roles/compute.networkAdmin": _NONE,
    "roles/compute.networkUser": _NONE,
    "roles/compute.networkViewer": _NONE,
    "roles/dns.peer": _NONE,
    "roles/pubsub.publisher": _NONE,
    "roles/pubsub.subscriber": _NONE,
    "roles/pubsub.viewer": _NONE,
    "roles/cloudkms.cryptoKeyEncrypterDecrypter": _NONE,
    "roles/cloudkms.cryptoKeyEncrypter": _NONE,
    "roles/cloudkms.cryptoKeyDecrypter": _NONE,
    "roles/serviceusage.serviceUsageConsumer": _NONE,
    # Certificate Authority Service: issuing from the proxy's inspection pool is policy HFG011's concern.
    "roles/privateca.admin": _NONE,
    "roles/privateca.caManager": _NONE,
    "roles/privateca.certificateManager": _NONE,
    "roles/privateca.certificateRequester": _NONE,
    "roles/privateca.workloadCertificateRequester": _NONE,
    "roles/privateca.templateUser": _NONE,
    "roles/privateca.auditor": _NONE,
    "roles/privateca.poolReader": _NONE,
}.items()}

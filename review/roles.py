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
# Writes what a job reads as code or trusts: objects in the staging bucket (or grants itself that, on the bucket or
# on one of its managed folders), images in the training repository.
MANAGED_FOLDER_SET_IAM = "storage.managedFolders.setIamPolicy"
OBJECT_WRITE = frozenset({"storage.objects.create", "storage.buckets.setIamPolicy", MANAGED_FOLDER_SET_IAM})
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
    "roles/storage.admin": {"storage.objects.create", "storage.buckets.setIamPolicy", MANAGED_FOLDER_SET_IAM},
    "roles/storage.objectAdmin": {"storage.objects.create", MANAGED_FOLDER_SET_IAM},
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

# What the local cloud serves, by permission (localcloud.iam: one evaluator every local service calls). These rows
# add, to the roles above, the permissions behind each call the local services answer; the review reads the
# token-relevant ones above and ignores these. One row per role, each citing the page that lists its permissions.
OBJECT_GET, OBJECT_LIST = "storage.objects.get", "storage.objects.list"
OBJECT_CREATE, OBJECT_DELETE = "storage.objects.create", "storage.objects.delete"
BUCKET_GET, BUCKET_LIST = "storage.buckets.get", "storage.buckets.list"
OBJECT_UPDATE = "storage.objects.update"
BUCKET_CREATE, BUCKET_UPDATE, BUCKET_DELETE = "storage.buckets.create", "storage.buckets.update", \
    "storage.buckets.delete"
BUCKET_GET_IAM, BUCKET_SET_IAM = "storage.buckets.getIamPolicy", "storage.buckets.setIamPolicy"
JOB_CREATE, JOB_LIST, JOB_CANCEL = "aiplatform.customJobs.create", "aiplatform.customJobs.list", \
    "aiplatform.customJobs.cancel"
LOG_LIST = "logging.logEntries.list"
GET_ACCESS_TOKEN = "iam.serviceAccounts.getAccessToken"
SECRET_CREATE, SECRET_GET, SECRET_LIST = "secretmanager.secrets.create", "secretmanager.secrets.get", \
    "secretmanager.secrets.list"
SECRET_UPDATE, SECRET_DELETE, SECRET_GET_IAM = "secretmanager.secrets.update", "secretmanager.secrets.delete", \
    "secretmanager.secrets.getIamPolicy"
VERSION_GET, VERSION_LIST = "secretmanager.versions.get", "secretmanager.versions.list"
ASSET_SEARCH_IAM, ASSET_SEARCH_RESOURCES = "cloudasset.assets.searchAllIamPolicies", \
    "cloudasset.assets.searchAllResources"
ASSET_LIST_RESOURCE = "cloudasset.assets.listResource"   # ListAssets, content type RESOURCE
ASSET_LIST_ACCESS_POLICY = "cloudasset.assets.listAccessPolicy"   # ListAssets, content type ACCESS_POLICY
_OBJECTS_ALL = {OBJECT_GET, OBJECT_LIST, OBJECT_CREATE, OBJECT_DELETE, OBJECT_UPDATE}
_BUCKETS_ALL = {BUCKET_GET, BUCKET_LIST, BUCKET_CREATE, BUCKET_UPDATE, BUCKET_DELETE, BUCKET_GET_IAM, BUCKET_SET_IAM}
_JOBS_ALL = {JOB_CREATE, JOB_READ, JOB_LIST, JOB_CANCEL}
_SECRETS_ALL = {SECRET_CREATE, SECRET_GET, SECRET_LIST, SECRET_UPDATE, SECRET_DELETE, SECRET_GET_IAM, VERSION_GET,
                VERSION_LIST}
SERVED = frozenset(_OBJECTS_ALL | _BUCKETS_ALL | _JOBS_ALL | {LOG_LIST, GET_ACCESS_TOKEN}
                   | _SECRETS_ALL | {ACCESS, *VERSION_TAMPER, SECRET_SET_IAM, ACT_AS}
                   | {ASSET_SEARCH_IAM, ASSET_SEARCH_RESOURCES})

_STORAGE = "https://cloud.google.com/storage/docs/access-control/iam-roles"
_VERTEX = "https://cloud.google.com/vertex-ai/docs/general/access-control"
_LOGGING = "https://cloud.google.com/logging/docs/access-control"
_SECRETS = "https://cloud.google.com/secret-manager/docs/access-control"
_IAM = "https://cloud.google.com/iam/docs/service-account-permissions"
_BASIC = "https://cloud.google.com/iam/docs/roles-overview#basic"
_ASSET = "https://cloud.google.com/asset-inventory/docs/roles-permissions"

SERVED_BY_ROLE: dict[str, tuple[frozenset[str], str]] = {k: (frozenset(v), src) for k, (v, src) in {
    "roles/owner": (SERVED, _BASIC),
    "roles/editor": (_OBJECTS_ALL | (_BUCKETS_ALL - {BUCKET_GET_IAM, BUCKET_SET_IAM}) | _JOBS_ALL | {LOG_LIST}
                     | (_SECRETS_ALL - {SECRET_GET_IAM}), _BASIC),
    "roles/viewer": ({BUCKET_GET, BUCKET_LIST, JOB_READ, JOB_LIST, LOG_LIST, SECRET_GET, SECRET_LIST, VERSION_GET,
                      VERSION_LIST}, _BASIC),
    "roles/storage.admin": (_OBJECTS_ALL | _BUCKETS_ALL, _STORAGE),
    "roles/storage.objectAdmin": (_OBJECTS_ALL, _STORAGE),
    "roles/storage.objectUser": (_OBJECTS_ALL, _STORAGE),
    "roles/storage.objectCreator": ({OBJECT_CREATE}, _STORAGE),
    "roles/storage.objectViewer": ({OBJECT_GET, OBJECT_LIST}, _STORAGE),
    "roles/storage.legacyBucketOwner": ({BUCKET_GET, BUCKET_UPDATE, BUCKET_GET_IAM, BUCKET_SET_IAM, OBJECT_LIST,
                                         OBJECT_CREATE, OBJECT_DELETE}, _STORAGE),
    "roles/storage.legacyBucketWriter": ({BUCKET_GET, OBJECT_LIST, OBJECT_CREATE, OBJECT_DELETE}, _STORAGE),
    "roles/storage.legacyBucketReader": ({BUCKET_GET, OBJECT_LIST}, _STORAGE),
    "roles/storage.legacyObjectReader": ({OBJECT_GET}, _STORAGE),
    "roles/storage.legacyObjectOwner": ({OBJECT_GET, OBJECT_UPDATE}, _STORAGE),
    "roles/aiplatform.admin": (_JOBS_ALL, _VERTEX),
    "roles/aiplatform.user": (_JOBS_ALL, _VERTEX),
    "roles/aiplatform.viewer": ({JOB_READ, JOB_LIST}, _VERTEX),
    "roles/logging.viewer": ({LOG_LIST}, _LOGGING),
    "roles/logging.privateLogViewer": ({LOG_LIST}, _LOGGING),
    "roles/logging.admin": ({LOG_LIST}, _LOGGING),
    "roles/secretmanager.admin": (_SECRETS_ALL, _SECRETS),
    "roles/secretmanager.secretVersionManager": ({SECRET_GET, SECRET_LIST, VERSION_GET, VERSION_LIST}, _SECRETS),
    "roles/secretmanager.viewer": ({SECRET_GET, SECRET_LIST, SECRET_GET_IAM, VERSION_GET, VERSION_LIST}, _SECRETS),
    "roles/iam.serviceAccountTokenCreator": ({GET_ACCESS_TOKEN}, _IAM),
    # The read-only identity of `hfgate review --live` (cloudasset.assets.*, of which the review calls these four).
    "roles/cloudasset.viewer": ({ASSET_SEARCH_IAM, ASSET_SEARCH_RESOURCES, ASSET_LIST_RESOURCE,
                                 ASSET_LIST_ACCESS_POLICY}, _ASSET),
}.items()}

# The one table: a role's permissions are the token-relevant rows above plus what the local cloud serves.
PREDEFINED = {role: PREDEFINED.get(role, frozenset()) | SERVED_BY_ROLE.get(role, (frozenset(), ""))[0]
              for role in [*PREDEFINED, *(r for r in SERVED_BY_ROLE if r not in PREDEFINED)]}

# What else reaches a team's resources (review.isolation, the teams' isolation matrix): placing an address in its
# subnet (its jobs' source range at the proxy), reading its private logs, pulling its images. One row per role, each
# citing the page that lists its permissions; added to the table like the rows above.
SUBNET_USE = "compute.subnetworks.use"
PRIVATE_LOG_LIST = "logging.privateLogEntries.list"
IMAGE_READ = "artifactregistry.repositories.downloadArtifacts"
_COMPUTE_ROLES = "https://cloud.google.com/compute/docs/access/iam"
_LOGGING_ROLES = "https://cloud.google.com/logging/docs/access-control"
_AR_ROLES = "https://cloud.google.com/artifact-registry/docs/access-control#roles"
_BASIC_ROLES = "https://cloud.google.com/iam/docs/roles-overview#basic"

ISOLATION_BY_ROLE: dict[str, tuple[frozenset[str], str]] = {k: (frozenset(v), src) for k, (v, src) in {
    "roles/owner": ({SUBNET_USE, PRIVATE_LOG_LIST, IMAGE_READ}, _BASIC_ROLES),
    "roles/editor": ({SUBNET_USE, IMAGE_READ}, _BASIC_ROLES),
    "roles/compute.networkUser": ({SUBNET_USE}, _COMPUTE_ROLES),
    "roles/compute.networkAdmin": ({SUBNET_USE}, _COMPUTE_ROLES),
    "roles/logging.privateLogViewer": ({PRIVATE_LOG_LIST}, _LOGGING_ROLES),
    "roles/logging.admin": ({PRIVATE_LOG_LIST}, _LOGGING_ROLES),
    "roles/artifactregistry.reader": ({IMAGE_READ}, _AR_ROLES),
    "roles/artifactregistry.writer": ({IMAGE_READ}, _AR_ROLES),
    "roles/artifactregistry.repoAdmin": ({IMAGE_READ}, _AR_ROLES),
    "roles/artifactregistry.admin": ({IMAGE_READ}, _AR_ROLES),
}.items()}
PREDEFINED = {role: PREDEFINED.get(role, frozenset()) | ISOLATION_BY_ROLE.get(role, (frozenset(), ""))[0]
              for role in [*PREDEFINED, *(r for r in ISOLATION_BY_ROLE if r not in PREDEFINED)]}

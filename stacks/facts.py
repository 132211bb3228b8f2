"""Facts about the outside world, each stated once and imported everywhere it is needed.

The Hugging Face host allowlist, the Vertex AI regions and the machine/accelerator table live here so that the
stacks (egress rules), the jobs (request validation), the local cloud (its Vertex stand-in) and the docs agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from stacks import hub_protocol

# Suffix rules are the durable form: the Hub moves its CDN and xet hosts, and redirects mid-download.
# `*.` matches any depth in Secure Web Proxy URL lists.
HF_HOST_RULES: tuple[str, ...] = ("huggingface.co", "*.huggingface.co", "hf.co", "*.hf.co")

# Hosts a download touches, each with its source: stacks/hub_protocol.py is the one table (all are covered by
# HF_HOST_RULES today).
HF_KNOWN_HOSTS: tuple[str, ...] = hub_protocol.hosts()


# The Hub's own host (its API and the resolve endpoints); every other HF host serves content addressed by hash
# (LFS CDN, xet CAS/transfer hosts), so the proxy can scope repositories on this host only.
HF_HUB_HOST = hub_protocol.hosts("hub")[0]
# The proxy's content hosts (Xet CAS, transfer, bridge; LFS CDN) and their shapes come from stacks.hub_protocol
# (stacks.egress_rules.content_roles), not from the suffix rules above.

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def split_allow_entry(entry: str) -> tuple[str, str | None]:
    """"org/name@rev" -> ("org/name", "rev"); "org/name" -> ("org/name", None)."""
    repo, _, rev = entry.partition("@")
    return repo, (rev or None)


def allow_entry_problem(entry: object, kind: str) -> str | None:
    """Why an allowlist entry is not usable, with the fix, or None."""
    if not isinstance(entry, str):
        return f"{entry!r} must be a string like \"org/name\""
    repo, rev = split_allow_entry(entry)
    if not _REPO_ID.match(repo) or ".." in repo or repo.endswith((".git", ".")):
        return (f"{entry!r} is not a full Hub repository id; write it with its namespace, as on its page, like"
                " \"google/txgemma-2b-predict\" (legacy ids such as gpt2 are now openai-community/gpt2)")
    if "@" in entry and rev is None:
        return f"{entry!r} has an empty revision; drop the @ or name a commit, tag or branch"
    if rev is not None and kind == "dataset":
        return (f"{entry!r}: datasets cannot be pinned (trl sft has no dataset revision flag, so the job would ask"
                f" for main and the proxy would refuse it); list {repo!r} without @")
    if rev is not None and not _REVISION.match(rev):
        return (f"{entry!r}: the revision must be a commit, tag or branch without '/' (refs/pr/N cannot be"
                " pinned: the proxy refuses encoded slashes)")
    return None


def host_allowed(host: str, rules: tuple[str, ...] = HF_HOST_RULES) -> bool:
    """True when `host` matches a Secure Web Proxy URL list entry: one without `/` is a domain (a path after `/`
    matches only the domain part against a host), `*.x` matches subdomains of x at any depth (never x itself or its
    look-alikes), `*x` matches x and its subdomains."""
    host = host.lower().rstrip(".")
    for rule in rules:
        domain = rule.split("/", 1)[0].lower()
        if domain.startswith("*."):
            if host.endswith(domain[1:]):
                return True
        elif domain.startswith("*"):
            if host == domain[1:] or host.endswith("." + domain[1:]):
                return True
        elif host == domain:
            return True
    return False


# The services a path to or from the token depends on, each on VPC Service Controls' supported products page (one
# row per service there, https://cloud.google.com/vpc-service-controls/docs/supported-products): a perimeter that
# enforces the allowlist restricts them all (stacks.perimeter; the review checks it, review.egress_model.perimeter).
VPCSC_SUPPORTED_PRODUCTS = "https://cloud.google.com/vpc-service-controls/docs/supported-products"
TOKEN_PATH_SERVICES: dict[str, str] = {
    "secretmanager.googleapis.com": "Secret Manager: the token's value",
    "storage.googleapis.com": "Cloud Storage: job inputs, checkpoints and mirrors (a copy to an outside bucket is"
                              " exfiltration)",
    "aiplatform.googleapis.com": "Vertex AI: the jobs and their specs",
    "iamcredentials.googleapis.com": "IAM Service Account Credentials: minting the trainer's and submitter's tokens",
    "artifactregistry.googleapis.com": "Artifact Registry: the image that runs with the token",
}


# Images from registries outside the perimeter, once it restricts Artifact Registry (searched 2026-12-07; README,
# "Images and the perimeter"). Each row: (Google's words, the page).
AR_VPCSC_PAGE = "https://cloud.google.com/artifact-registry/docs/securing-with-vpc-sc"
VERTEX_VPCSC_PAGE = "https://cloud.google.com/vertex-ai/docs/general/vpc-service-controls"
IMAGE_PERIMETER_FACTS: tuple[tuple[str, str], ...] = (
    ("If you are using Artifact Registry and Google Kubernetes Engine private clusters in a project within a service"
     " perimeter, you can access container images inside the service perimeter as well as Google-provided images.",
     AR_VPCSC_PAGE),
    ("Cached Docker Hub images stored on mirror.gcr.io are not included in the service perimeter unless an egress rule"
     " is added to allow egress to the Artifact Registry Docker cache that hosts mirror.gcr.io. (The rule: "
     "artifactregistry.googleapis.com, method artifactregistry.googleapis.com/DockerRead, resources"
     " projects/342927644502, identityType ANY_IDENTITY.)", AR_VPCSC_PAGE),
    ("You aren't required to include any additional services for Vertex AI to function. However, Vertex AI won't be"
     " able to reach resources outside the perimeter, such as files in a Cloud Storage bucket that is outside the"
     " perimeter.", VERTEX_VPCSC_PAGE),
)
# Not found on Google's pages: whether a Vertex AI custom job in a perimeter that restricts Artifact Registry pulls a
# Deep Learning Container (us-docker.pkg.dev/deeplearning-platform-release/...): the "Google-provided images"
# sentence is about GKE private clusters, and no page gives an egress rule or a project number for that project.
# So the stacks open nothing by default (config `perimeter_image_projects`, empty) and the README says what to check
# in dry-run before enforcing.
AR_DOCKER_READ = "artifactregistry.googleapis.com/DockerRead"
# Registry projects for which Google documents the egress rule itself (DockerRead only): the review names no path for
# such a rule; any other project an image-pull rule names is a finding the reviewer accepts with a reason.
DOCUMENTED_IMAGE_EGRESS: dict[str, str] = {
    "projects/342927644502": f"mirror.gcr.io's Artifact Registry Docker cache (Google's rule, {AR_VPCSC_PAGE})",
}


# Regions where Vertex AI custom training is offered (the ones this bundle supports).
VERTEX_REGIONS: tuple[str, ...] = (
    "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3", "us-west4",
    "northamerica-northeast1", "northamerica-northeast2", "southamerica-east1",
    "europe-west1", "europe-west2", "europe-west3", "europe-west4", "europe-west6", "europe-west9",
    "europe-north1", "europe-central2", "europe-southwest1",
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1",
    "australia-southeast1", "me-west1",
)


@dataclass(frozen=True)
class MachineShape:
    machine_type: str
    accelerator_type: str | None
    accelerator_counts: tuple[int, ...]
    note: str = ""


def _shapes() -> dict[str, MachineShape]:
    table: dict[str, MachineShape] = {}
    for size in (4, 8, 12, 16, 32):
        table[f"g2-standard-{size}"] = MachineShape(f"g2-standard-{size}", "NVIDIA_L4", (1,))
    for size, count in ((24, 2), (48, 4), (96, 8)):
        table[f"g2-standard-{size}"] = MachineShape(f"g2-standard-{size}", "NVIDIA_L4", (count,))
    for count in (1, 2, 4, 8):
        table[f"a2-highgpu-{count}g"] = MachineShape(f"a2-highgpu-{count}g", "NVIDIA_TESLA_A100", (count,))
        table[f"a2-ultragpu-{count}g"] = MachineShape(f"a2-ultragpu-{count}g", "NVIDIA_A100_80GB", (count,))
        table[f"a3-highgpu-{count}g"] = MachineShape(
            f"a3-highgpu-{count}g", "NVIDIA_H100_80GB", (count,),
            "small sizes may need --scheduling SPOT or FLEX_START" if count < 8 else "")
    table["a3-megagpu-8g"] = MachineShape("a3-megagpu-8g", "NVIDIA_H100_MEGA_80GB", (8,))
    table["a3-ultragpu-8g"] = MachineShape("a3-ultragpu-8g", "NVIDIA_H200_141GB", (8,))
    for size in (4, 8, 16, 32, 64, 96):
        table[f"n1-standard-{size}"] = MachineShape(f"n1-standard-{size}", None, ())
    # CPU-only machines (no accelerator): useful for smoke runs and the local cloud.
    for size in (4, 8, 16):
        table[f"e2-standard-{size}"] = MachineShape(f"e2-standard-{size}", None, ())
    return table


MACHINES: dict[str, MachineShape] = _shapes()

# Vertex AI DiskSpec.boot_disk_type: "pd-ssd", "pd-standard" or "hyperdisk-balanced"; A3 Ultra (a3-ultragpu-*)
# machines take Hyperdisk only ("hyperdisk-balanced" is their default). Reference: DiskSpec (Vertex AI REST v1).
BOOT_DISK_TYPES = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
HYPERDISK_ONLY_PREFIXES = ("a3-ultragpu-",)


def boot_disk_type(machine_type: str) -> str:
    return "hyperdisk-balanced" if machine_type.startswith(HYPERDISK_ONLY_PREFIXES) else "pd-ssd"


def boot_disk_problem(machine_type: str, disk_type: str) -> str | None:
    if disk_type not in BOOT_DISK_TYPES:
        return f"boot disk type {disk_type!r}: one of {', '.join(BOOT_DISK_TYPES)}"
    if machine_type.startswith(HYPERDISK_ONLY_PREFIXES) and disk_type != "hyperdisk-balanced":
        return f"{machine_type} takes a hyperdisk-balanced boot disk only"
    return None


def kms_key_problem(key: str, region: str) -> str | None:
    """A CustomJob's encryption_spec.kms_key_name must be a Cloud KMS key in the job's region (Vertex AI CMEK)."""
    from stacks.constraints import KMS_LOCATION
    m = KMS_LOCATION.match(key)
    if not m:
        return f"kms_key_name {key!r} must be projects/P/locations/L/keyRings/R/cryptoKeys/K"
    if m.group(1) != region:
        return f"the key is in {m.group(1)}; a job in {region} needs a key in {region}"
    return None

# n1 machines take T4 or V100 as attached accelerators.
N1_ACCELERATORS: dict[str, tuple[int, ...]] = {"NVIDIA_TESLA_T4": (1, 2, 4), "NVIDIA_TESLA_V100": (1, 2, 4, 8)}

ACCELERATOR_TYPES: tuple[str, ...] = tuple(sorted(
    {m.accelerator_type for m in MACHINES.values() if m.accelerator_type} | set(N1_ACCELERATORS)))


def machine_problem(machine_type: str, accelerator_type: str | None, accelerator_count: int) -> str | None:
    """Why this machine/accelerator/count triple is invalid for Vertex AI, or None when it is valid."""
    shape = MACHINES.get(machine_type)
    if shape is None:
        return (f"unknown machine type {machine_type!r}; choose one of: "
                + ", ".join(sorted(MACHINES)))
    if machine_type.startswith("n1-"):
        if accelerator_type is None:
            return None if accelerator_count == 0 else "accelerator_count is set but no accelerator_type"
        counts = N1_ACCELERATORS.get(accelerator_type)
        if counts is None:
            return (f"{machine_type} takes NVIDIA_TESLA_T4 or NVIDIA_TESLA_V100, not {accelerator_type}")
        if accelerator_count not in counts:
            return f"{accelerator_type} on {machine_type} takes a count of {'/'.join(map(str, counts))}"
        return None
    if shape.accelerator_type is None:
        if accelerator_type:
            return f"{machine_type} takes no accelerator; use a g2/a2/a3 machine for GPUs"
        return None
    if accelerator_type != shape.accelerator_type:
        return f"{machine_type} comes with {shape.accelerator_type}, not {accelerator_type or 'no accelerator'}"
    if accelerator_count not in shape.accelerator_counts:
        return (f"{machine_type} comes with exactly {shape.accelerator_counts[0]} x {shape.accelerator_type}; "
                f"set accelerator_count = {shape.accelerator_counts[0]}")
    return None


DEFAULT_TRAINING_IMAGE = (
    "us-docker.pkg.dev/deeplearning-platform-release/gcr.io/"
    "huggingface-pytorch-training-cu121.2-3.transformers.4-48.ubuntu2204.py311"
)


# Registries whose images may run with the token unpinned (config `trusted_image_registries`, this default when
# unset): Google's Deep Learning Containers (the Hugging Face training images Google publishes) and the project's
# own Artifact Registry. `{project}` is the environment's project; `*` matches one host label. Anything else must
# be pinned by digest (`image@sha256:<64 hex>`): its publisher controls code that runs with the token.
DEFAULT_TRUSTED_REGISTRIES: tuple[str, ...] = (
    "us-docker.pkg.dev/deeplearning-platform-release/",
    "europe-docker.pkg.dev/deeplearning-platform-release/",
    "asia-docker.pkg.dev/deeplearning-platform-release/",
    "*-docker.pkg.dev/{project}/",
)
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_REGISTRY_ENTRY = re.compile(r"^(\*-)?[a-z0-9.-]+(:[0-9]+)?/(([a-z0-9._-]+|\{project\})/)*$")


def registry_entry_problem(entry: object) -> str | None:
    if not isinstance(entry, str) or not _REGISTRY_ENTRY.match(entry):
        return (f"{entry!r} must be a registry path ending in '/', like \"europe-docker.pkg.dev/my-project/\""
                " (a leading \"*-\" matches one host label)")
    return None


def image_problem(image: str, trusted: tuple[str, ...]) -> str | None:
    """Why `image` may not run with the token, or None: it must come from a trusted registry or be pinned by
    digest."""
    if _DIGEST.search(image):
        return None
    for entry in trusted:
        head, sep, tail = entry.partition("/")
        host, _, path = image.partition("/")
        host_re = "".join("[a-z0-9]+(?:-[a-z0-9]+)*" if c == "*" else re.escape(c) for c in head)
        if sep and re.fullmatch(host_re, host) and (path + "/").startswith(tail):
            return None
    return (f"image {image!r} is neither from a trusted registry ({', '.join(trusted) or 'none'}) nor pinned by"
            " digest: its publisher controls code that runs with the token")


# Which API serves each Terraform resource type (by type prefix, longest first). A resource of an API the stack
# enables depends on that API's google_project_service, so the first apply on a bare project succeeds in one run.
API_OF_RESOURCE_PREFIX: tuple[tuple[str, str], ...] = (
    ("google_project_service_identity", ""),           # depends on the API it names (stacks.project)
    ("google_project_iam_custom_role", "iam.googleapis.com"),
    ("google_secret_manager_", "secretmanager.googleapis.com"),
    ("google_storage_", "storage.googleapis.com"),
    ("google_service_account", "iam.googleapis.com"),
    ("google_pubsub_", "pubsub.googleapis.com"),
    ("google_logging_", "logging.googleapis.com"),
    ("google_compute_", "compute.googleapis.com"),
    ("google_network_services_", "networkservices.googleapis.com"),
    ("google_network_security_", "networksecurity.googleapis.com"),
    ("google_dns_", "dns.googleapis.com"),
    ("google_access_context_manager_", "accesscontextmanager.googleapis.com"),
    ("google_vertex_ai_", "aiplatform.googleapis.com"),
    ("google_kms_", "cloudkms.googleapis.com"),
    ("google_privateca_", "privateca.googleapis.com"),
)


def api_for(resource_type: str) -> str | None:
    """The API a resource type needs enabled, or None (project-level IAM, the API resources themselves, ...)."""
    for prefix, api in sorted(API_OF_RESOURCE_PREFIX, key=lambda x: -len(x[0])):
        if resource_type.startswith(prefix):
            return api or None
    return None

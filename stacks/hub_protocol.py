"""What a download from the Hugging Face Hub needs on the wire, read-only: the one source of truth.

Every host a download touches and every request shape it makes, each row with the source that says so (a file and
function of the pinned client, huggingface_hub 2.4.0 and hf-xet 1.8.0 in constraints.txt, or a page of the Hub's or
Xet's documentation). The proxy rules (stacks/egress_rules.py), the review's egress model and the local Hub read this
table; nothing else lists Hugging Face hosts.

Two storage backends serve a file's bytes:
- Xet (the default for new uploads: Hub changelog "Xet is now the default storage option for new users and
  organizations", May 23 2025; https://huggingface.co/docs/hub/xet). The Hub's HEAD answer on `resolve` carries
  `X-Xet-Hash` and a refresh route; the client asks that route (`xet-read-token`) for a CAS url and a short-lived
  token, asks the CAS for the file's reconstruction, then reads byte ranges of xorbs from the transfer host.
- Git LFS (older files, and every file when the client has Xet off: `HF_HUB_DISABLE_XET`): `resolve` redirects (302)
  to a signed URL on the LFS CDN or the Xet bridge, which serves the whole file without the Hub token.

Hosts move: https://huggingface.co/.well-known/meta.json publishes the current download domains.
"""
from __future__ import annotations

from dataclasses import dataclass

HF_HUB = "huggingface_hub 2.4.0"
HF_XET = "hf-xet 1.8.0 (xet-core)"
XET_API_DOC = "https://huggingface.co/docs/xet/api"
XET_AUTH_DOC = "https://huggingface.co/docs/xet/auth"
XET_DOWNLOAD_DOC = "https://huggingface.co/docs/xet/download-protocol"
HUB_STORAGE_DOC = "https://huggingface.co/docs/hub/xet"
HUB_FIREWALL_DOC = "https://huggingface.co/docs/hub/models-downloading#downloading-behind-a-proxy-or-firewall"
META_JSON = "https://huggingface.co/.well-known/meta.json"

ROLES = ("hub", "lfs-cdn", "xet-cas", "xet-transfer", "xet-bridge")
READ = ("GET", "HEAD")


@dataclass(frozen=True)
class Host:
    """A host a download touches."""
    name: str            # exact host name
    role: str            # one of ROLES
    source: str          # page or library file (with version) that says this host is used


@dataclass(frozen=True)
class RequestShape:
    """One request a download makes. `path` is a template: {model} and {dataset} are `org/name`, {rev} a branch, tag
    or commit, {file} a path in the repository, {hash} a 64-hex Xet hash, {anything} any path (content-addressed);
    `[...]` is an optional part."""
    role: str                      # which host role serves it
    methods: tuple[str, ...]
    path: str
    repo_scoped: bool              # the path names the repository (the proxy can restrict it to listed ones)
    kinds: tuple[str, ...]         # ("model",), ("dataset",) or both
    purpose: str
    source: str


HOSTS: tuple[Host, ...] = (
    Host("huggingface.co", "hub",
         f"{HF_HUB} constants.py: ENDPOINT = 'https://huggingface.co', HUGGINGFACE_CO_URL_TEMPLATE"),
    Host("cas-server.xethub.hf.co", "xet-cas",
         f"{HF_XET} xet_client/src/hub_client/types.rs CasJWTInfo (the token route's casUrl); {XET_AUTH_DOC}"),
    Host("cas-server.xethub-eu.hf.co", "xet-cas", f"{META_JSON} (as transcribed in shared/reference/hub-protocol.md)"),
    Host("transfer.xethub.hf.co", "xet-transfer",
         f"{HF_XET} openapi/cas.openapi.yaml getReconstructionV1/V2 examples (fetch_info url); {XET_DOWNLOAD_DOC}"),
    Host("transfer.xethub-eu.hf.co", "xet-transfer",
         f"{META_JSON} (as transcribed in shared/reference/hub-protocol.md)"),
    Host("cas-bridge.xethub.hf.co", "xet-bridge",
         f"{HF_XET} examples/xet_pkg_napi/README.md (outbound access to huggingface.co and cas-bridge.xethub.hf.co);"
         f" {HUB_STORAGE_DOC} (backward compatibility with LFS: the bridge serves Xet files to LFS clients)"),
    Host("us.aws.cdn.hf.co", "xet-bridge", f"{HUB_FIREWALL_DOC}; {META_JSON} cdnDomains"),
    Host("us.gcp.cdn.hf.co", "xet-bridge", f"{HUB_FIREWALL_DOC}; {META_JSON} cdnDomains"),
    Host("cdn-lfs-us-1.hf.co", "lfs-cdn", f"{META_JSON} lfsDomains"),
    Host("cdn-lfs-eu-1.hf.co", "lfs-cdn", f"{META_JSON} lfsDomains"),
    Host("cdn-lfs.hf.co", "lfs-cdn", f"{META_JSON} lfsDomains"),
    Host("cdn-lfs.huggingface.co", "lfs-cdn", f"{META_JSON} lfsDomains (the older LFS CDN name)"),
)

# Deliberately NOT a download host, although it is a Hugging Face subdomain: datasets-server.huggingface.co (the
# dataset viewer API, https://huggingface.co/docs/dataset-viewer) serves the rows of any public dataset, listed or not,
# by its name in a query string. `datasets` asks it for a dataset's exported infos (NOT_NEEDED below) and goes on
# without them when refused; files always come through `resolve`. A rule covering `*.huggingface.co` would let jobs
# read any dataset through it.
NOT_DOWNLOAD_HOSTS: tuple[str, ...] = ("datasets-server.huggingface.co",)
VIEWER_ROLE = "dataset-viewer"      # the role of NOT_DOWNLOAD_HOSTS in NOT_NEEDED rows

BOTH = ("model", "dataset")

DOWNLOAD: tuple[RequestShape, ...] = (
    RequestShape("hub", ("GET",), "/api/models/{model}", True, ("model",),
                 "repository info (transformers' and trl's model lookups, no revision given)",
                 f"{HF_HUB} hf_api.py HfApi.model_info (revision None)"),
    RequestShape("hub", ("GET",), "/api/models/{model}/revision/{rev}", True, ("model",),
                 "revision info: the commit a branch or tag points at, before a snapshot",
                 f"{HF_HUB} hf_api.py HfApi.model_info; _snapshot_download.py snapshot_download (api.repo_info)"),
    RequestShape("hub", ("GET",), "/api/datasets/{dataset}", True, ("dataset",),
                 "repository info, no revision given", f"{HF_HUB} hf_api.py HfApi.dataset_info (revision None)"),
    RequestShape("hub", ("GET",), "/api/datasets/{dataset}/revision/{rev}", True, ("dataset",),
                 "revision info", f"{HF_HUB} hf_api.py HfApi.dataset_info; _snapshot_download.py snapshot_download"),
    RequestShape("hub", ("GET",), "/api/models/{model}/tree/{rev}[/{file}]", True, ("model",),
                 "file listing (recursive, paginated by Link rel=next); for Xet files it carries xetHash, so a"
                 " cached listing lets the client skip the HEAD",
                 f"{HF_HUB} hf_api.py HfApi.list_repo_tree; _snapshot_download.py snapshot_download;"
                 " file_download.py _xet_file_metadata_from_tree_cache"),
    RequestShape("hub", ("GET",), "/api/datasets/{dataset}/tree/{rev}[/{file}]", True, ("dataset",),
                 "file listing", f"{HF_HUB} hf_api.py HfApi.list_repo_tree"),
    RequestShape("hub", READ, "/{model}/resolve/{rev}/{file}", True, ("model",),
                 "file metadata (HEAD: X-Repo-Commit, ETag, size, and for Xet files X-Xet-Hash and the refresh"
                 " route) and small files' bytes (GET); large LFS files answer 302 to the CDN or the bridge",
                 f"{HF_HUB} file_download.py get_hf_file_metadata, hf_hub_url, _download_to_tmp_and_move"),
    RequestShape("hub", READ, "/datasets/{dataset}/resolve/{rev}/{file}", True, ("dataset",),
                 "as above, for a dataset", f"{HF_HUB} file_download.py hf_hub_url (REPO_TYPES_URL_PREFIXES)"),
    RequestShape("hub", ("GET",), "/api/models/{model}/xet-read-token/{rev}", True, ("model",),
                 "the refresh route of a Xet file ({rev} is the commit: the Hub's HEAD answer names it, and the"
                 " client builds the same route from the commit of a cached tree listing): answers X-Xet-Cas-Url, X-Xet-Access-Token and"
                 " X-Xet-Token-Expiration (and the same as JSON casUrl/accessToken/exp, which hf-xet reads when it"
                 " refreshes the token)",
                 f"{HF_HUB} utils/_xet.py xet_connection_info_refresh_url, _fetch_xet_connection_info_with_url,"
                 f" parse_xet_connection_info_from_headers; {HF_XET} xet_client/src/hub_client/types.rs CasJWTInfo"),
    RequestShape("hub", ("GET",), "/api/datasets/{dataset}/xet-read-token/{rev}", True, ("dataset",),
                 "as above, for a dataset", f"{HF_HUB} utils/_xet.py xet_connection_info_refresh_url"),
    RequestShape("xet-cas", ("GET",), "/v2/reconstructions/{hash}", False, BOTH,
                 "a file's reconstruction (terms and signed multi-range xorb URLs), with the Xet token; a 404 or 501"
                 " makes the client fall back to v1",
                 f"{HF_XET} xet_client/src/cas_client/remote_client.rs get_reconstruction_v2; {XET_API_DOC}"),
    RequestShape("xet-cas", ("GET",), "/v1/reconstructions/{hash}", False, BOTH,
                 "a file's reconstruction (terms and one signed xorb URL per chunk range)",
                 f"{HF_XET} xet_client/src/cas_client/remote_client.rs get_reconstruction_v1; {XET_API_DOC};"
                 f" {XET_DOWNLOAD_DOC}"),
    RequestShape("xet-transfer", ("GET",), "/{anything}", False, BOTH,
                 "byte ranges (Range header) of xorbs at the signed URLs the reconstruction gave"
                 " (/xorb(s)/default/{hash}?...): content addressed, no Hub token",
                 f"{HF_XET} xet_client/src/cas_client/remote_client.rs get_file_term_data; {XET_DOWNLOAD_DOC}"),
    RequestShape("xet-bridge", ("GET",), "/{anything}", False, BOTH,
                 "a Xet file's whole bytes for a client without Xet (resolve's 302 Location, signed,"
                 " /xet-bridge-us/...): content addressed, no Hub token",
                 f"{HF_HUB} file_download.py http_get (follows the Location of the HEAD answer); {HUB_STORAGE_DOC}"),
    RequestShape("lfs-cdn", ("GET",), "/{anything}", False, BOTH,
                 "an LFS file's bytes (resolve's 302 Location, signed /repos/...): content addressed, no Hub token",
                 f"{HF_HUB} file_download.py http_get; shared/reference/hub-protocol.md (file row)"),
)

# Requests the pinned clients send during a download that the download does not need: the proxy denies them and the
# download still succeeds (each is best-effort in the client).
NOT_NEEDED: tuple[RequestShape, ...] = (
    RequestShape("xet-cas", ("POST",), "/v1/telemetry", False, BOTH,
                 "hf-xet's transfer summary (on by default; HF_XET_TELEMETRY_ENABLED=0 turns it off); fire-and-forget,"
                 " never retried: a write method to a Hugging Face host, so denied",
                 f"{HF_XET} xet_client/src/cas_client/telemetry/mod.rs TransferTelemetry::maybe_new;"
                 " xet_runtime/src/config/groups/telemetry.rs (enabled = true)"),
    RequestShape("hub", ("GET",), "/api/agent-harnesses", False, BOTH,
                 "agent detection registry, fetched at most once a day (skipped with HF_HUB_DISABLE_TELEMETRY=1)",
                 f"{HF_HUB} utils/_detect_agent.py"),
    RequestShape(VIEWER_ROLE, ("GET",), "/info?dataset={dataset}", True, ("dataset",),
                 "the dataset viewer's exported infos, asked by load_dataset (no data_files, main revision) with the"
                 " Hub token; any failure is caught (DatasetViewerError) and the files are read through resolve",
                 "datasets 5.2.0 utils/_dataset_viewer.py get_exported_dataset_infos; load.py"
                 " HubDatasetModuleFactory (use_exported_dataset_infos)"),
)


def hosts(role: str | None = None) -> tuple[str, ...]:
    """Host names, all of them or those of one role."""
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown host role {role!r}: one of {', '.join(ROLES)}")
    return tuple(h.name for h in HOSTS if role is None or h.role == role)


def shapes(role: str | None = None, kind: str | None = None) -> tuple[RequestShape, ...]:
    """The request shapes a download needs, all of them or those one host role serves (for one repository kind)."""
    return tuple(s for s in DOWNLOAD if (role is None or s.role == role) and (kind is None or kind in s.kinds))

"""Endpoints and clients, from configuration only: Google's and the Hub's real ones by default, another endpoint
(the local cloud's, when its env file is sourced) by setting HFGATE_SECRETMANAGER_ENDPOINT, HFGATE_VERTEX_ENDPOINT,
HFGATE_ASSET_ENDPOINT and HFGATE_GOOGLEAPIS_REST. Always TLS, trusting what the standard settings say (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH,
REQUESTS_CA_BUNDLE): no endpoint gets different treatment."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def apply_scoped_proxy() -> None:
    """HFGATE_HTTPS_PROXY, when set, is this process's HTTPS proxy (HTTPS_PROXY and https_proxy, with loopback
    added to NO_PROXY): a proxy for hfgate alone, leaving the shell's curl, pip and the rest as they were. The
    local cloud's env file sets it (its gateway serves one Google host and refuses everything else)."""
    proxy = os.environ.get("HFGATE_HTTPS_PROXY")
    if not proxy:
        return
    os.environ["HTTPS_PROXY"] = os.environ["https_proxy"] = proxy
    for name in ("NO_PROXY", "no_proxy"):
        have = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(have + [h for h in LOOPBACK if h not in have])


def credentials():
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from stacks.errors import UsageError
    apply_scoped_proxy()
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        metadata = os.environ.get("GCE_METADATA_HOST")
        state = os.environ.get("HFGATE_LOCALCLOUD_STATE")
        if state:
            raise UsageError(f"the local cloud this shell was set up for ({state}) is not running: its metadata"
                             f" server {metadata} does not answer",
                             "start it again (python -m localcloud up), then `source"
                             f" {state}/localcloud.env` again in this shell: the ports change at each start") from None
        if metadata:
            raise UsageError(f"no Google credentials found: the metadata server GCE_METADATA_HOST={metadata} does"
                             " not answer", "unset GCE_METADATA_HOST (and GCE_METADATA_IP) to use your own"
                             " credentials, or point it at a metadata server that runs") from None
        raise UsageError(f"no Google credentials found ({exc.args[0][:120]})",
                         "run `gcloud auth application-default login`, or run on a machine with a service"
                         " account") from None
    return creds


def impersonated(target_email: str, lifetime_s: int = 900):
    """Short-lived credentials of `target_email`, minted with the caller's own (IAM Credentials
    generateAccessToken; the caller needs Service Account Token Creator on that account). Nothing is minted until
    first use."""
    from google.auth import impersonated_credentials
    return impersonated_credentials.Credentials(source_credentials=credentials(), target_principal=target_email,
                                                target_scopes=SCOPES, lifetime=lifetime_s)


def _transport(transport_cls, endpoint: str | None, default_host: str, creds=None):
    return transport_cls(host=endpoint or default_host, credentials=creds or credentials())


def secret_manager(creds=None):
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc import (
        SecretManagerServiceGrpcTransport,
    )
    return SecretManagerServiceClient(transport=_transport(
        SecretManagerServiceGrpcTransport, os.environ.get("HFGATE_SECRETMANAGER_ENDPOINT"),
        "secretmanager.googleapis.com", creds))


def asset(creds=None):
    """Cloud Asset Inventory (`hfgate review --live`); HFGATE_ASSET_ENDPOINT points it elsewhere (the local cloud)."""
    from google.cloud.asset_v1.services.asset_service import AssetServiceClient
    from google.cloud.asset_v1.services.asset_service.transports.grpc import AssetServiceGrpcTransport
    return AssetServiceClient(transport=_transport(
        AssetServiceGrpcTransport, os.environ.get("HFGATE_ASSET_ENDPOINT"), "cloudasset.googleapis.com", creds))


def vertex(region: str):
    _defer_vertex_package_inits()
    from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport
    return JobServiceClient(transport=_transport(
        JobServiceGrpcTransport, os.environ.get("HFGATE_VERTEX_ENDPOINT"), f"{region}-aiplatform.googleapis.com"))


def vertex_custom_job():
    """The CustomJob message class of Vertex AI's v1 API (JobState comes with it)."""
    _defer_vertex_package_inits()
    from google.cloud.aiplatform_v1.types.custom_job import CustomJob
    return CustomJob


# `google.cloud.aiplatform_v1`'s __init__ imports the client of every Vertex AI service (about 40) and its `types`
# package's __init__ every message: about 2.2 s of CPU, paid by each `hfgate` command that talks to Vertex AI, which
# needs only JobService and the types it uses (about 0.3 s more than Secret Manager's client). Both packages are
# registered without running their __init__; their submodules import as usual; the first use of anything else in
# either package (another service's client, `aiplatform_v1.CustomJob`, dir(), `import *`) runs that __init__ then,
# so code in the same process that uses the rest of the package sees it whole. Nothing changes where the package
# was already imported.
_VERTEX_PACKAGES = ("google.cloud.aiplatform_v1", "google.cloud.aiplatform_v1.types")
_deferred_lock = threading.RLock()


def _defer_vertex_package_inits() -> None:
    for name in _VERTEX_PACKAGES:
        _defer_package_init(name)


def _defer_package_init(name: str) -> None:
    with _deferred_lock:
        if name in sys.modules:
            return
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return                                   # not a package here: the plain import will say why
        module = importlib.util.module_from_spec(spec)
        ran = False

        def run_init() -> None:
            nonlocal ran
            with _deferred_lock:
                if not ran:
                    ran = True
                    spec.loader.exec_module(module)

        def module_getattr(attr: str):
            if not ran and not attr.startswith("__"):
                try:
                    return importlib.import_module(f"{name}.{attr}")      # a submodule: no __init__ needed
                except ModuleNotFoundError as exc:
                    if exc.name != f"{name}.{attr}":
                        raise
            run_init()
            try:
                return module.__dict__[attr]
            except KeyError:
                raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

        def module_dir() -> list[str]:
            run_init()
            return sorted(module.__dict__)

        setattr(module, "__getattr__", module_getattr)
        setattr(module, "__dir__", module_dir)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def googleapis_rest(service: str) -> str:
    """Base URL for REST calls (Secret Manager access, Cloud Logging)."""
    return os.environ.get("HFGATE_GOOGLEAPIS_REST") or f"https://{service}.googleapis.com"


def storage(project: str):
    from google.cloud import storage as gcs
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        # The caller's own credentials at the emulator's endpoint (the client would go anonymous): the local cloud
        # checks Cloud Storage's IAM as Google does.
        return gcs.Client(project=project, credentials=credentials(),
                          client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]})
    return gcs.Client(project=project, credentials=credentials())

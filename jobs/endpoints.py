"""Endpoints and clients, from configuration only: Google's and the Hub's real ones by default, the local cloud's
when its env file is sourced. Loopback gRPC endpoints use local channel credentials (the call credentials still
travel); everything else is TLS as usual."""
from __future__ import annotations

import os

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _is_loopback(endpoint: str) -> bool:
    host = endpoint.rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "[::1]")


def credentials():
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from stacks.errors import UsageError
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError as exc:
        raise UsageError(f"no Google credentials found ({exc.args[0][:120]})",
                         "run `gcloud auth application-default login`, or run on a machine with a service"
                         " account") from None
    if _is_loopback(os.environ.get("HFGATE_SECRETMANAGER_ENDPOINT", "")):
        # google-auth looks up the account's Regional Access Boundary at iamcredentials.googleapis.com, a host
        # the offline local cloud cannot answer for: its retries only print warnings. Skip it there, nowhere else.
        if hasattr(creds, "_rab_disabled"):
            creds._rab_disabled = True
    return creds


def _transport(transport_cls, endpoint: str | None, default_host: str):
    import grpc
    host = endpoint or default_host
    kwargs = {"host": host, "credentials": credentials()}
    if _is_loopback(host):
        kwargs["ssl_channel_credentials"] = grpc.local_channel_credentials()
    return transport_cls(**kwargs)


def secret_manager():
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports.grpc import (
        SecretManagerServiceGrpcTransport,
    )
    return SecretManagerServiceClient(transport=_transport(
        SecretManagerServiceGrpcTransport, os.environ.get("HFGATE_SECRETMANAGER_ENDPOINT"),
        "secretmanager.googleapis.com"))


def vertex(region: str):
    from google.cloud.aiplatform_v1 import JobServiceClient
    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport
    return JobServiceClient(transport=_transport(
        JobServiceGrpcTransport, os.environ.get("HFGATE_VERTEX_ENDPOINT"), f"{region}-aiplatform.googleapis.com"))


def googleapis_rest(service: str) -> str:
    """Base URL for REST calls (Secret Manager access, Cloud Logging)."""
    return os.environ.get("HFGATE_GOOGLEAPIS_REST") or f"https://{service}.googleapis.com"


def storage(project: str):
    from google.cloud import storage as gcs
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials
        return gcs.Client(project=project, credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]})
    return gcs.Client(project=project, credentials=credentials())

"""Endpoints and clients, from configuration only: Google's and the Hub's real ones by default, another endpoint
(the local cloud's, when its env file is sourced) by setting HFGATE_SECRETMANAGER_ENDPOINT, HFGATE_VERTEX_ENDPOINT
and HFGATE_GOOGLEAPIS_REST. Always TLS, trusting what the standard settings say (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH,
REQUESTS_CA_BUNDLE): no endpoint gets different treatment."""
from __future__ import annotations

import os

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


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

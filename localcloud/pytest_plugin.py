"""A pytest plugin for teams testing their own job scripts against the local cloud (not loaded by default).

Enable it in your conftest.py with `pytest_plugins = ["localcloud.pytest_plugin"]`. Fixtures:

- `hfgate_cloud`: the local cloud (Hub, Secret Manager, Vertex AI, Cloud Logging, metadata server, GCS emulator,
  TLS with its own CA), started once per test session from the synthesized `local` stack and seeded from
  `--hfgate-seed FILE` (or the `hfgate_seed` ini option; default localcloud/seed.toml), with the token of
  `--hfgate-token-name` (default alice-read) stored in its secret;
- `hfgate_env`: the environment a job script runs with: the outputs contract (`HFGATE_OUTPUTS`), the endpoints
  (`HF_ENDPOINT`, `HFGATE_SECRETMANAGER_ENDPOINT`, ...), the metadata server that gives the caller its identity,
  and the trust settings for the local CA. Pass it to `subprocess.run(..., env=...)`.

While `hfgate_cloud` is up, this process trusts the local CA too (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, ...), so a
test may also call the official clients in-process, inside `with hfgate_cloud.environ(as_member=...)` (the endpoints
and that member's identity for the block; the submitter's by default).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("hfgate local cloud")
    group.addoption("--hfgate-seed", help="seed file for the local cloud (default localcloud/seed.toml)")
    group.addoption("--hfgate-token-name", default="alice-read", help="which seeded Hub token to store as the"
                    " environment's token (default alice-read)")
    parser.addini("hfgate_seed", "seed file for the local cloud")


@pytest.fixture(scope="session")
def hfgate_cloud(request, tmp_path_factory):
    from google.cloud.secretmanager_v1 import types as sm

    from jobs import endpoints
    from localcloud.cloud import LocalCloud
    seed = request.config.getoption("--hfgate-seed") or request.config.getini("hfgate_seed") or None
    cloud = LocalCloud(Path(seed) if seed else None, tmp_path_factory.mktemp("hfgate-localcloud")).start()
    with cloud.environ(as_member=cloud.admin):
        value = cloud.hub_tokens[request.config.getoption("--hfgate-token-name")].encode()
        import google_crc32c
        endpoints.secret_manager().add_secret_version(parent=cloud.outputs.token_secret, payload=sm.SecretPayload(
            data=value, data_crc32c=google_crc32c.value(value)))
    trust = {k: os.environ.get(k) for k in cloud.tls.trust_env()}
    os.environ.update(cloud.tls.trust_env())
    yield cloud
    for k, v in trust.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    cloud.stop()


@pytest.fixture
def hfgate_env(hfgate_cloud) -> dict[str, str]:
    return {**os.environ, **hfgate_cloud.env()}

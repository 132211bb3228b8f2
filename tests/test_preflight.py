"""Each preflight case and its exit code, through huggingface_hub against the local Hub."""
from __future__ import annotations

import json

import pytest
from huggingface_hub import HfApi

from jobs.preflight import preflight
from jobs.token import HfToken
from tests.conftest import hfgate, set_token

GATED = "hfgate-demo/tiny-gated-lm"
MANUAL = "hfgate-demo/tiny-manual-lm"

CASES = [
    # (token name or literal, model, revision, exit code, words the failing row must contain)
    ("alice-read", GATED, "main", 0, None),
    ("alice-fg-gated", GATED, "main", 0, None),
    ("alice-write", GATED, "main", 0, "broader than training needs"),
    ("bob-read", GATED, "main", 4, "has not accepted the model's terms"),
    ("carol-read", MANUAL, "main", 4, "awaiting the authors' review"),
    ("dave-read", MANUAL, "main", 4, "rejected"),
    ("alice-fg-nogated", GATED, "main", 4, "read access to public gated repos"),
    ("alice-fg-scoped-other", "acme/private-lm", "main", 0, None),
    ("bob-read", "acme/private-lm", "main", 5, "no model"),
    ("alice-revoked", GATED, "main", 3, "rejects this token"),
    ("alice-read", "hfgate-demo/Tiny-Gated-LM", "main", 5, "did you mean hfgate-demo/tiny-gated-lm"),
    ("alice-read", GATED, "v9-does-not-exist", 5, "no revision"),
    ("alice-read", "hfgate-demo/pickle-only-lm", "main", 0, "only pickle weights"),
    ("lit:", GATED, "main", 3, "empty"),
    ("lit:   ", GATED, "main", 3, "whitespace"),
    ("lit:$HF_TOKEN", GATED, "main", 3, "placeholder"),
    ("lit:${HF_TOKEN}", GATED, "main", 3, "placeholder"),
    ("lit:Bearer hf_abc", GATED, "main", 3, "Bearer"),
    ("lit:'hf_abc'", GATED, "main", 3, "quotes"),
    ("lit:ghp_abcdefghijklmnopqrstuvwxyzabcdefgh", GATED, "main", 3, "does not start with hf_"),
]


@pytest.fixture
def api(cloud):
    return HfApi(endpoint=cloud.hub.url)


@pytest.mark.parametrize("token,model,revision,code,words", CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_preflight_case(cloud, api, token, model, revision, code, words):
    value = token[4:] if token.startswith("lit:") else cloud.hub_tokens[token]
    report = preflight(HfToken(value), model, revision, api=api)
    assert report.exit_code == code, report.table()
    if words:
        assert words in report.table()
    if not token.startswith("lit:"):
        assert value not in report.table() + report.to_json()


def test_transient_errors_are_retried_then_reported(cloud, api):
    cloud.hub_state.set_fault("/api/", fail_503=2)
    try:
        report = preflight(HfToken(cloud.hub_tokens["alice-read"]), GATED, api=api)
        assert report.exit_code == 0, report.table()
        cloud.hub_state.set_fault("/api/", fail_503=1000)
        report = preflight(HfToken(cloud.hub_tokens["alice-read"]), GATED, api=api)
        assert report.exit_code == 6 and "did not answer" in report.table()
    finally:
        cloud.hub_state.clear_faults()


def test_checks_run_concurrently(cloud, api):
    """Three Hub round trips at 300 ms each take about one round trip, not three."""
    cloud.hub_state.set_fault("/api/", latency_s=0.3)
    try:
        report = preflight(HfToken(cloud.hub_tokens["alice-read"]), GATED, api=api)
    finally:
        cloud.hub_state.clear_faults()
    assert report.ok and report.seconds < 0.8, report.seconds


def test_cli_check_reads_the_secret_and_prints_json(cloud):
    version = set_token(cloud, cloud.hub_tokens["alice-read"] + "\n")
    proc = hfgate(cloud, "check", "--model", GATED, "--json", "-v")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["user"] == "alice"
    assert "ends with a newline" in proc.stderr      # echo TOKEN | gcloud ... stores one; we strip and warn
    assert version.endswith("/versions/" + version.rsplit("/", 1)[-1])
    assert cloud.hub_tokens["alice-read"] not in proc.stdout + proc.stderr

"""The environment's allowlist outside the proxy: config validation, the preflight's refusal (exit 4, naming the
config field, before the token is read or any job exists), and the bootstrap trusting the proxy's TLS inspection
CA so the Hub clients accept its certificates."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stacks.config import parse_settings
from stacks.errors import ConfigError
from tests.conftest import ROOT, hfgate, set_token

GATED = "hfgate-demo/tiny-gated-lm"
DATASET = "hfgate-demo/tiny-chat"
BASE = {"project_id": "acme-hfgate-sbx", "region": "us-central1", "prefix": "hfg-sbx"}


@pytest.mark.parametrize("field,entry,words", [
    ("allow_models", "gpt2", "namespace"),
    ("allow_models", "a/../b", "namespace"),
    ("allow_models", "org/name@", "empty revision"),
    ("allow_models", "org/name@refs/pr/1", "without '/'"),
    ("allow_datasets", "org/data@main", "cannot be pinned"),
    ("allow_models", 7, "must be a string"),
])
def test_bad_allowlist_entries_name_the_field_and_the_fix(field, entry, words):
    with pytest.raises(ConfigError) as err:
        parse_settings("sandbox", {**BASE, field: [entry]})
    assert err.value.exit_code == 2 and field in str(err.value) and words in str(err.value)


def test_a_listed_twice_entry_is_refused():
    with pytest.raises(ConfigError, match="listed twice"):
        parse_settings("sandbox", {**BASE, "allow_models": ["a/b", "a/b"]})


def _outputs_with(cloud, tmp_path, **fields) -> dict:
    data = json.loads(cloud.outputs.to_json()) | fields
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(data))
    return {"HFGATE_OUTPUTS": str(path)}


def test_the_preflight_refuses_an_unlisted_model_before_reading_the_token(cloud, tmp_path):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    env = _outputs_with(cloud, tmp_path, allowed_models=["hfgate-demo/tiny-open-lm"], allowed_datasets=[DATASET])
    jobs, reads = cloud.jobs.create_calls, len(cloud.secrets.calls)
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "1", extra_env=env)
    assert proc.returncode == 4, proc.stderr
    assert "not in allow_models of config/local.toml" in proc.stderr
    assert f'add "{GATED}" to allow_models in config/local.toml' in proc.stderr
    assert cloud.jobs.create_calls == jobs and len(cloud.secrets.calls) == reads   # nothing read, nothing created


def test_an_unlisted_dataset_and_a_pinned_revision_are_refused(cloud, tmp_path):
    env = _outputs_with(cloud, tmp_path, allowed_models=[f"{GATED}@v1"], allowed_datasets=["acme/other"])
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--revision", "v1", extra_env=env)
    assert proc.returncode == 4 and "not in allow_datasets" in proc.stderr, proc.stderr
    env = _outputs_with(cloud, tmp_path, allowed_models=[f"{GATED}@v1"], allowed_datasets=[DATASET])
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, extra_env=env)
    assert proc.returncode == 4 and "pins hfgate-demo/tiny-gated-lm to v1, not main" in proc.stderr, proc.stderr
    assert "--revision v1" in proc.stderr


def test_a_listed_model_passes_and_the_check_says_so(cloud, tmp_path):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    env = _outputs_with(cloud, tmp_path, allowed_models=[GATED], allowed_datasets=[DATASET])
    proc = hfgate(cloud, "check", "--model", GATED, extra_env=env)
    assert proc.returncode == 0, proc.stderr
    assert "allowlist (model)" in proc.stdout + proc.stderr and "is listed in allow_models" in proc.stdout + proc.stderr
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--dry-run", "--json", extra_env=env)
    assert proc.returncode == 0, proc.stderr


def test_the_job_spec_carries_the_proxy_ca_for_the_bootstrap(cloud, tmp_path):
    pem = cloud.tls.ca_file.read_text()
    env = _outputs_with(cloud, tmp_path, egress_mode="proxy", proxy_url="http://10.8.0.138:443",
                        network_attachment="projects/p/regions/r/networkAttachments/a", proxy_ca_certificate=pem)
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--dry-run", "--json", extra_env=env)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)["custom_job"]["job_spec"]["worker_pool_specs"][0]["container_spec"]
    assert {e["name"]: e["value"] for e in spec["env"]}["HFGATE_PROXY_CA"] == pem


def test_the_bootstrap_adds_the_proxy_ca_to_what_the_hub_clients_trust(cloud, tmp_path):
    """The local Hub's certificate stands in for the proxy's interception certificates: without the CA the
    clients refuse it; through the bootstrap with HFGATE_PROXY_CA they accept it (and still trust the system roots)."""
    from jobs.jobspec import BOOTSTRAP_SOURCE
    token = cloud.hub_tokens["alice-read"]
    child = ("import os, sys\nfrom huggingface_hub import HfApi\n"
             "print(HfApi().whoami(token=sys.argv[1])['name'], os.environ['SSL_CERT_FILE'] == os.environ['REQUESTS_CA_BUNDLE'])")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")}
    base.update({"HF_ENDPOINT": cloud.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "TMPDIR": str(tmp_path)})
    plain = subprocess.run([sys.executable, "-c", child, token], env=base, cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in plain.stderr
    env = {**base, "HFGATE_PROXY_CA": cloud.tls.ca_file.read_text()}
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP_SOURCE, "--", sys.executable, "-c", child, token],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["alice", "True"]
    bundle = (tmp_path / "hfgate-trust.pem").read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 1          # the system roots are kept, the CA is added
    bad = subprocess.run([sys.executable, "-c", BOOTSTRAP_SOURCE, "--", "true"], env={**base, "HFGATE_PROXY_CA": "x"},
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 64 and "not a PEM certificate" in bad.stderr

"""Deploy truth: what Google's APIs reject is rejected at synth (stacks.constraints) and by the local cloud.

Each row of the constraints table has a case that breaks it; the findings that made every first apply fail (the
secret's annotation keys, one CMEK key for replicas in two locations, a perimeter nobody can pass) are refused at
synth, by the local cloud's plan check and by its Secret Manager; the fixes are asserted on the synthesized JSON,
each with the page it follows."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from stacks.constraints import CONSTRAINTS, ConstraintError, annotation_problems, check
from stacks.config import parse_settings
from stacks.errors import ConfigError
from tests.conftest import ROOT


def one(plan, rtype):
    (v,) = plan["resource"][rtype].values()
    return v


def first(plan, rtype, prefix=""):
    return next(v for k, v in plan["resource"][rtype].items() if k.startswith(prefix))


def test_every_environment_synthesizes_within_the_table(plans):
    assert set(plans) == {"sandbox", "prod", "local", "dev", "local-teams"}
    assert check(plans) == []


# One breaking case per row (the key is the row id).
BREAK = {
    "secret-annotations": lambda d: first(d, "google_secret_manager_secret", "hf-token_")["annotations"].update(
        {"hfgate/purpose": "x"}),
    "secret-id": lambda d: first(d, "google_secret_manager_secret", "hf-token_").update(secret_id="hf token!"),
    "secret-cmek-location": lambda d: first(d, "google_secret_manager_secret", "hf-token_")["replication"]["user_managed"]
    ["replicas"][1]["customer_managed_encryption"].update(
        kms_key_name="projects/k/locations/europe-west4/keyRings/r/cryptoKeys/k"),
    "secret-rotation": lambda d: first(d, "google_secret_manager_secret", "hf-token_")["rotation"].update(rotation_period="60s"),
    "secret-destroy-ttl": lambda d: first(d, "google_secret_manager_secret", "hf-token_").update(version_destroy_ttl="3600s"),
    "secret-topics": lambda d: first(d, "google_secret_manager_secret", "hf-token_").update(
        topics=[{"name": f"projects/p/topics/t{i}"} for i in range(11)]),
    "labels": lambda d: first(d, "google_storage_bucket").update(labels={"Team": "ml"}),
    "provider-labels": lambda d: d["provider"]["google"][0]["default_labels"].update({"env": "Prod!"}),
    "bucket-name": lambda d: first(d, "google_storage_bucket").update(name="google-hfgate-bucket"),
    "bucket-cmek-location": lambda d: first(d, "google_storage_bucket")["encryption"].update(
        default_kms_key_name="projects/k/locations/us-east1/keyRings/r/cryptoKeys/k"),
    "bucket-soft-delete": lambda d: first(d, "google_storage_bucket")["soft_delete_policy"].update(
        retention_duration_seconds=86400),
    "service-account-id": lambda d: first(d, "google_service_account").update(account_id="Trainer"),
    "topic-name": lambda d: first(d, "google_pubsub_topic", "hf-token_").update(name="goog-rotation"),
    "topic-retention": lambda d: first(d, "google_pubsub_topic", "hf-token_").update(message_retention_duration="60s"),
    "compute-name": lambda d: one(d, "google_compute_network").update(name="HFG_VPC"),
    "firewall-priority": lambda d: one(d, "google_compute_firewall").update(priority=70000),
    "swp-rule-priority": lambda d: first(d, "google_network_security_gateway_security_policy_rule").update(
        priority=-1),
    "swp-matcher": lambda d: first(d, "google_network_security_gateway_security_policy_rule", "egress_allow-repos-"
                                   ).update(application_matcher=" || ".join(["request.path == '/x'"] * 14)),
    "swp-url-list-entries": lambda d: first(d, "google_network_security_url_lists").update(
        values=[f"h{i}.example.com" for i in range(2501)]),
    "tls-min-version": lambda d: one(d, "google_network_security_tls_inspection_policy").update(
        min_tls_version="TLS_1_2"),
    "ca-path-length": lambda d: one(d, "google_privateca_certificate_authority")["config"]["x509_config"]
    ["ca_options"].pop("zero_max_issuer_path_length"),
    "ca-pool-tier": lambda d: one(d, "google_privateca_ca_pool").update(tier="BASIC"),
    "swp-gateway": lambda d: one(d, "google_network_services_gateway").update(routing_mode="TRANSPARENT"),
    "network-attachment": lambda d: one(d, "google_compute_network_attachment").update(
        connection_preference="ACCEPT_ALL"),
    "perimeter-ingress": lambda d: one(d, "google_access_context_manager_service_perimeter")["status"].pop(
        "ingress_policies"),
}


@pytest.mark.parametrize("row", [c.id for c in CONSTRAINTS])
def test_each_row_refuses_what_google_refuses(plans, row):
    assert set(BREAK) == {c.id for c in CONSTRAINTS}, "every row of stacks.constraints needs a breaking case"
    constraint = next(c for c in CONSTRAINTS if c.id == row)
    # prod has CMEK and the perimeter; dev has the allowlist's TLS inspection (CA, policy, packed rules).
    env = "sandbox" if row in ("swp-matcher", "tls-min-version", "ca-path-length", "ca-pool-tier") else "prod"
    plan = copy.deepcopy(plans[env])
    BREAK[row](plan)
    found = check({f"hfgate-{env}": plan})
    assert found and all(v.field == constraint.field and v.page == constraint.page for v in found), found
    assert constraint.page.startswith("https://") and constraint.fix


def test_the_findings_that_failed_every_first_apply_are_fixed(plans):
    for env, plan in plans.items():
        for secret in plan["resource"]["google_secret_manager_secret"].values():    # the read and write tokens'
            # Secret.annotations (Secret Manager REST reference): keys alphanumeric at both ends, - _ . inside.
            assert set(secret["annotations"]) == {"hfgate-purpose", "hfgate-set-with"}, env
            assert annotation_problems(secret["annotations"]) == []
    prod = plans["prod"]
    # CustomerManagedEncryption: each replica's key is in that replica's location.
    for secret in prod["resource"]["google_secret_manager_secret"].values():
        replicas = secret["replication"]["user_managed"]["replicas"]
        assert {r["location"]: r["customer_managed_encryption"]["kms_key_name"].split("/")[3] for r in replicas} \
            == {"europe-west4": "europe-west4", "europe-west1": "europe-west1"}
    # The Secret Manager agent is granted each of those keys, and the secret waits for the grants.
    grants = [v for k, v in prod["resource"]["google_kms_crypto_key_iam_member"].items() if "secretmanager" in k]
    assert {g["crypto_key_id"].split("/")[3] for g in grants} == {"europe-west4", "europe-west1"}


def test_the_perimeter_lets_in_who_must_reach_the_project(plans):
    """Ingress and egress rules for VPC Service Controls: without an ingress policy, Terraform, token set and
    submit from outside the perimeter are denied."""
    perimeter = one(plans["prod"], "google_access_context_manager_service_perimeter")
    (policy,) = perimeter["status"]["ingress_policies"]
    identities = policy["ingress_from"]["identities"]
    assert "serviceAccount:terraform@acme-hfgate-prod.iam.gserviceaccount.com" in identities
    assert "serviceAccount:hfg-prod-submitter@acme-hfgate-prod.iam.gserviceaccount.com" in identities
    assert {o["service_name"] for o in policy["ingress_to"]["operations"]} == set(
        perimeter["status"]["restricted_services"])
    assert "spec" not in perimeter and plans["prod"]["output"]["egress_enforced"]["value"] is True


def test_dry_run_is_the_documented_first_step():
    """perimeter_dry_run (the default): the same configuration as a dry-run spec, nothing enforced."""
    base = {"project_id": "acme-hfgate-prod", "region": "europe-west4", "prefix": "hfg-prod",
            "access_policy_id": "123"}
    s = parse_settings("prod", base)
    assert s.perimeter_dry_run and not s.egress_enforced
    with pytest.raises(ConfigError) as err:
        parse_settings("prod", {**base, "perimeter_dry_run": False})
    assert "perimeter_ingress_identities" in str(err.value) and "Terraform" in str(err.value)
    with pytest.raises(ConfigError):
        parse_settings("prod", {**base, "perimeter_ingress_identities": ["eve@example.com"]})
    enforced = parse_settings("prod", {**base, "perimeter_dry_run": False,
                                       "perimeter_ingress_identities": ["group:admins@acme.example"]})
    assert enforced.egress_enforced


def test_a_replica_without_a_key_in_its_location_is_refused_at_config():
    raw = {"project_id": "acme-hfgate-prod", "region": "europe-west4", "prefix": "hfg-prod",
           "kms_key": "projects/k/locations/europe-west4/keyRings/r/cryptoKeys/k",
           "secret_replica_locations": ["europe-west4", "europe-west1"]}
    with pytest.raises(ConfigError) as err:
        parse_settings("prod", raw)
    assert "europe-west1" in str(err.value) and "secret_kms_keys" in str(err.value)
    with pytest.raises(ConfigError):
        parse_settings("prod", {**raw, "secret_kms_keys": {
            "europe-west1": "projects/k/locations/europe-west4/keyRings/r/cryptoKeys/k"}})


def test_silent_differences_are_gone(plans):
    dev, prod = plans["sandbox"], plans["prod"]
    ca = one(dev, "google_privateca_certificate_authority")["config"]["x509_config"]["ca_options"]
    # google provider: max_issuer_path_length = 0 is sent only with zero_max_issuer_path_length = true.
    assert ca["max_issuer_path_length"] == 0 and ca["zero_max_issuer_path_length"] is True
    tls = one(dev, "google_network_security_tls_inspection_policy")
    # TLS inspection policy reference: min_tls_version not yet honoured by Secure Web Proxy.
    assert "min_tls_version" not in tls
    # The provider's TLS inspection example: the policy waits for the agent's role on the CA pool.
    assert any(d.startswith("google_privateca_ca_pool_iam_member.") for d in tls["depends_on"])
    # Usage logs: the cloud-storage-analytics@google.com group creates objects in the log bucket.
    writers = [v for v in dev["resource"]["google_storage_bucket_iam_member"].values()
               if v["member"] == "group:cloud-storage-analytics@google.com"]
    assert len(writers) == 1 and writers[0]["role"] == "roles/storage.objectCreator"
    assert "logs" in writers[0]["bucket"]
    # CMEK: every bucket waits for the Cloud Storage agent's key grant.
    for bucket in prod["resource"]["google_storage_bucket"].values():
        assert any("google_kms_crypto_key_iam_member.cmek-storage" in d for d in bucket["depends_on"])
    topic = first(prod, "google_pubsub_topic", "hf-token_")
    assert any("cmek-pubsub" in d for d in topic["depends_on"])


def _synth_with(patch: str, tmp_path):
    code = ("import runpy, sys\n" + patch + "\nsys.argv = ['main.py']\nrunpy.run_path('main.py', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "CDKTF_OUTDIR": str(tmp_path / "out"),
                               "HFGATE_ENVS": "sandbox"})


def test_make_synth_stops_on_a_violation_and_writes_nothing(tmp_path):
    """The annotation key of round 2, put back: synth exits 2 naming the resource, the field and the fix."""
    patch = ("import stacks.secret as s\norig = s.SecretManagerSecret\n"
             "s.SecretManagerSecret = lambda *a, **k: orig(*a, **{**k, 'annotations': {'hfgate/purpose': 'x'}})")
    proc = _synth_with(patch, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "google_secret_manager_secret" in proc.stderr and "annotation key 'hfgate/purpose'" in proc.stderr
    assert "fix:" in proc.stderr and not list((tmp_path / "out").rglob("cdk.tf.json"))


def test_the_local_cloud_refuses_a_plan_google_would_refuse(synth_dir, tmp_path):
    from localcloud import LocalCloud
    from review.plan import synthesized
    plan = json.loads(synthesized(synth_dir, "local").read_text())
    first(plan, "google_secret_manager_secret", "hf-token_")["annotations"] = {"hfgate/purpose": "x"}
    bad = tmp_path / "stacks" / "hfgate-local" / "cdk.tf.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps(plan))
    with pytest.raises(ConstraintError) as err:
        LocalCloud(plan=bad)
    assert "hfgate/purpose" in str(err.value)


SM_SCRIPT = r"""
import json, sys
from google.api_core import exceptions
from google.cloud.secretmanager_v1 import types as sm
from google.protobuf import field_mask_pb2
from jobs import endpoints
client = endpoints.secret_manager()
out = {}
try:
    client.create_secret(parent=sys.argv[1], secret_id="bad-annotations", secret=sm.Secret(
        replication=sm.Replication(automatic=sm.Replication.Automatic()), annotations={"hfgate/purpose": "x"}))
    out["create"] = "created"
except exceptions.InvalidArgument as e:
    out["create"] = e.message
secret = client.get_secret(name=sys.argv[2])
out["annotations"] = dict(secret.annotations)
try:
    client.update_secret(secret=sm.Secret(name=secret.name, annotations={"-bad": "x"}),
                         update_mask=field_mask_pb2.FieldMask(paths=["annotations"]))
    out["update"] = "updated"
except exceptions.InvalidArgument as e:
    out["update"] = e.message
out["after"] = dict(client.get_secret(name=secret.name).annotations)
print(json.dumps(out))
"""


def test_the_local_secret_manager_answers_a_bad_annotation_like_google(cloud):
    """Through the official client, as the platform admin: INVALID_ARGUMENT for a bad key, nothing changed."""
    import os
    before = set(cloud.secrets.secrets)
    proc = subprocess.run([sys.executable, "-c", SM_SCRIPT, f"projects/{cloud.project_id}", cloud.outputs.token_secret],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **cloud.env(as_member=cloud.admin)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert "annotation key 'hfgate/purpose'" in out["create"] and set(cloud.secrets.secrets) == before
    assert out["annotations"] == {"hfgate-purpose": "hugging-face-token",
                                  "hfgate-set-with": "hfgate token set --env ... (never terraform)"}
    assert "annotation key '-bad'" in out["update"] and out["after"] == out["annotations"]


# Secure Web Proxy limits, at the sizes teams use ---------------------------------------------------------------
def _repos(n):
    models = [f"org{i}/model-{i}" for i in range(n * 2 // 3)]
    return models, [f"dorg{i}/data-{i}" for i in range(n - len(models))]


@pytest.mark.parametrize("n", [10, 120, 300])
def test_hundreds_of_repositories_fit_the_proxy_limits(n):
    from stacks.egress_rules import proxy_rules
    models, datasets = _repos(n)
    settings = parse_settings("sandbox", {"project_id": "acme-hfgate-sbx", "region": "us-central1", "prefix": "hfg-sbx",
                                      "allow_models": models, "allow_datasets": datasets})
    rules = proxy_rules(settings.allow_models, settings.allow_datasets, all_hosts_list="a", content_hosts_list="c")
    assert len(rules) <= 250
    config = {"provider": {"google": [{"project": "p", "region": "r"}]}, "resource": {
        "google_network_security_gateway_security_policy_rule": {
            r.name: {"name": r.name, "priority": r.priority, "session_matcher": r.session_matcher,
                     "application_matcher": r.application_matcher, "gateway_security_policy": "pol"}
            for r in rules}}}
    assert check({"s": config}) == []


def test_an_allowlist_that_cannot_fit_is_refused_naming_the_limit():
    models, datasets = _repos(15000)      # about 12,000 fit (stacks.egress_rules packs them as RE2 alternations)
    with pytest.raises(ConfigError) as err:
        parse_settings("sandbox", {"project_id": "acme-hfgate-sbx", "region": "us-central1", "prefix": "hfg-sbx",
                               "allow_models": models, "allow_datasets": datasets})
    assert "250" in str(err.value) and "allow_models" in str(err.value)


def test_per_project_limits_count_every_stack_in_the_project():
    configs = {f"s{i}": {"provider": {"google": [{"project": "p", "region": "r"}]}, "resource": {
        "google_network_security_url_lists": {"a": {"name": f"l{i}a"}, "b": {"name": f"l{i}b"}},
        "google_network_services_gateway": {"g": {"name": f"g{i}", "type": "SECURE_WEB_GATEWAY"}}}}
        for i in range(6)}
    found = check(configs)
    assert {v.field for v in found} == {"count"}
    assert any("12 URL lists" in v.problem for v in found) and any("6 Secure Web Proxy gateways" in v.problem
                                                                     for v in found)


def test_each_listed_repository_gets_only_its_recorded_shapes(plans):
    from review.egress import ProxyPolicy, Request
    from review.plan import load
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cdk.tf.json"
        path.write_text(json.dumps(plans["sandbox"]))
        policy = ProxyPolicy.from_plan(load(path))
    repo = "google/txgemma-2b-predict"
    jobs = "10.8.0.2"      # the jobs' subnet: the allow rules hold for it only
    for method, host, p, want in [
            ("GET", "huggingface.co", f"/api/models/{repo}", "allow"),
            ("GET", "huggingface.co", f"/api/models/{repo}/revision/main", "allow"),
            ("HEAD", "huggingface.co", f"/{repo}/resolve/main/config.json", "allow"),
            ("GET", "huggingface.co", f"/api/models/{repo}/xet-read-token/{'a' * 40}", "allow"),
            ("GET", "cas-server.xethub.hf.co", f"/v2/reconstructions/{'0' * 64}", "allow"),
            ("GET", "huggingface.co", f"/api/models/{repo}/discussions", "deny"),
            ("GET", "huggingface.co", f"/api/models/{repo}/commits/main", "deny"),
            ("POST", "huggingface.co", f"/api/models/{repo}/paths-info/main", "deny"),
            ("GET", "huggingface.co", f"/api/models/{repo}-evil/revision/main", "deny"),
            ("GET", "huggingface.co", f"/api/models/{repo}/xet-write-token/main", "deny"),
            ("GET", "datasets-server.huggingface.co", "/rows", "deny"),
            ("POST", "cas-server.xethub.hf.co", f"/v1/xorbs/default/{'0' * 64}", "deny")]:
        assert policy.decide(Request(host, method, p, source_ip=jobs)).action == want, (method, host, p)
    # From outside the jobs' range nothing is allowed.
    assert policy.decide(Request("huggingface.co", "GET", f"/api/models/{repo}", source_ip="10.9.0.5")).action == "deny"

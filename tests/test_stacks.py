"""The synthesized plans: every resource and grant the stacks promise, per egress mode, checked on the JSON."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from stacks.config import load_settings
from stacks.contract import FIELDS, outputs_from_settings, parse_outputs
from tests.conftest import ROOT, SYNTH_CANARY, run_main
from stacks.naming import names_for

PRIMITIVE = {"roles/owner", "roles/editor", "roles/viewer"}


def resources(plan: dict, rtype: str) -> list[dict]:
    return list(plan.get("resource", {}).get(rtype, {}).values())


def one(plan: dict, rtype: str, **match) -> dict:
    found = [r for r in resources(plan, rtype) if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {rtype} with {match}, found {len(found)}"
    return found[0]


def ref_id(plan: dict, rtype: str, **match) -> str:
    """The logical name of a resource, to compare against `${type.name.attr}` references."""
    for name, r in plan["resource"][rtype].items():
        if all(r.get(k) == v for k, v in match.items()):
            return f"{rtype}.{name}"
    raise AssertionError(f"no {rtype} with {match}")


def test_every_environment_is_synthesized(plans):
    assert set(plans) == {"sandbox", "prod", "local", "dev", "local-teams"}


@pytest.mark.parametrize("env", ["sandbox", "prod", "local"])
def test_token_secret_is_a_container_only(plans, env):
    plan, s = plans[env], load_settings(env)
    secret = one(plan, "google_secret_manager_secret", secret_id=names_for(s).secret_id)
    assert [r["location"] for r in secret["replication"]["user_managed"]["replicas"]] == list(s.replicas)
    assert secret["deletion_protection"] is True
    assert secret["rotation"]["rotation_period"] == f"{s.token_rotation_days * 86400}s"
    assert len(secret["topics"]) == 1
    assert "secret_data" not in json.dumps(resources(plan, "google_secret_manager_secret_version"))
    assert resources(plan, "google_secret_manager_secret_version") == []


def test_nothing_synthesized_contains_the_token(synth_dir):
    for path in synth_dir.rglob("*"):
        if path.is_file():
            assert SYNTH_CANARY not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("env", ["sandbox", "prod", "local"])
def test_only_trainer_and_submitter_can_read_the_token(plans, env):
    plan = plans[env]
    trainer = ref_id(plan, "google_service_account", account_id=names_for(load_settings(env)).trainer_account_id)
    submitter = ref_id(plan, "google_service_account", account_id=names_for(load_settings(env)).submitter_account_id)
    publisher = ref_id(plan, "google_service_account", account_id=names_for(load_settings(env)).publisher_account_id)
    read_secret = ref_id(plan, "google_secret_manager_secret", secret_id=names_for(load_settings(env)).secret_id)
    write_secret = ref_id(plan, "google_secret_manager_secret",
                          secret_id=names_for(load_settings(env)).write_secret_id)
    accessors = resources(plan, "google_secret_manager_secret_iam_member")
    on = {s: sorted(a["member"] for a in accessors if a["secret_id"] == f"${{{s}.secret_id}}")
          for s in (read_secret, write_secret)}
    assert on[read_secret] == sorted([f"${{{submitter}.member}}", f"${{{trainer}.member}}"])
    assert on[write_secret] == [f"${{{publisher}.member}}"]       # publishing: the publisher only
    assert len(accessors) == 3
    assert {a["role"] for a in accessors} == {"roles/secretmanager.secretAccessor"}
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for grant in resources(plan, rtype):
            assert "secretmanager" not in grant["role"], "no project-level secret access"
            assert grant["role"] not in PRIMITIVE


@pytest.mark.parametrize("env", ["sandbox", "prod", "local"])
def test_least_privilege_identities(plans, env):
    plan = plans[env]
    assert resources(plan, "google_service_account_key") == []
    assert len(resources(plan, "google_service_account")) == 3       # trainer, submitter, publisher
    names = names_for(load_settings(env))
    trainer = ref_id(plan, "google_service_account", account_id=names.trainer_account_id)
    submitter = ref_id(plan, "google_service_account", account_id=names.submitter_account_id)
    publisher = ref_id(plan, "google_service_account", account_id=names.publisher_account_id)
    grants = sorted((a["service_account_id"], a["role"], a["member"])
                    for a in resources(plan, "google_service_account_iam_member"))
    # The submitter acts as the trainer (runs jobs) and may mint the publisher's token (publishes); nothing else.
    assert grants == sorted([(f"${{{trainer}.name}}", "roles/iam.serviceAccountUser", f"${{{submitter}.member}}"),
                             (f"${{{publisher}.name}}", "roles/iam.serviceAccountTokenCreator",
                              f"${{{submitter}.member}}")])
    project_roles = {g["role"] for g in resources(plan, "google_project_iam_member")}
    assert "roles/aiplatform.user" in project_roles
    assert not any(m in json.dumps(plan) for m in ("allUsers", "allAuthenticatedUsers",
                                                   "-compute@developer.gserviceaccount.com"))


@pytest.mark.parametrize("env", ["sandbox", "prod", "local"])
def test_buckets_are_hardened(plans, env):
    plan, names = plans[env], names_for(load_settings(env))
    buckets = {b["name"]: b for b in resources(plan, "google_storage_bucket")}
    assert set(buckets) == {names.staging_bucket, names.artifacts_bucket, names.mirror_bucket, names.logs_bucket}
    for b in buckets.values():
        assert b["uniform_bucket_level_access"] is True
        assert b["public_access_prevention"] == "enforced"
        assert b["versioning"]["enabled"] is True
        assert b["soft_delete_policy"]["retention_duration_seconds"] >= 604800
        assert b["location"] == load_settings(env).region.upper()
    # checkov's access-logging check is skipped for the logs bucket only in spirit: assert the others log.
    for name in (names.staging_bucket, names.artifacts_bucket, names.mirror_bucket):
        assert "logs" in buckets[name]["logging"]["log_bucket"]
    assert any(r["action"]["type"] == "Delete" for r in buckets[names.staging_bucket]["lifecycle_rule"])
    grants = {(g["role"]) for g in resources(plan, "google_storage_bucket_iam_member")
              if g["member"] != "group:cloud-storage-analytics@google.com"}
    assert grants == {"roles/storage.objectViewer", "roles/storage.objectUser"}
    # Usage logs: Google's analytics group may only create objects, in the log bucket only.
    usage = [g for g in resources(plan, "google_storage_bucket_iam_member")
             if g["member"] == "group:cloud-storage-analytics@google.com"]
    assert [(g["role"], names.logs_bucket in g["bucket"] or "logs" in g["bucket"]) for g in usage] == [
        ("roles/storage.objectCreator", True)]


def test_proxy_mode_without_an_allowlist_allows_reads_from_the_download_hosts(plans):
    plan = plans["prod"]          # proxy mode, no allow_models / allow_datasets
    from stacks import hub_protocol as hp
    url_list = one(plan, "google_network_security_url_lists")
    assert url_list["values"] == list(hp.hosts()) and "datasets-server.huggingface.co" not in url_list["values"]
    rules = {r["name"]: r for r in resources(plan, "google_network_security_gateway_security_policy_rule")}
    assert set(rules) == {"deny-ambiguous-paths", "deny-write-methods", "allow-hugging-face"}
    allow = rules["allow-hugging-face"]
    assert allow["basic_profile"] == "ALLOW" and "inUrlList(host()" in allow["session_matcher"]
    assert "inIpRange(source.ip, " in allow["session_matcher"]          # the jobs' subnet only
    assert allow["application_matcher"] == "request.method in ['GET', 'HEAD']" and allow["tls_inspection_enabled"]
    assert rules["deny-write-methods"]["basic_profile"] == "DENY"
    assert rules["deny-write-methods"]["priority"] < allow["priority"]
    # Read-only needs the proxy to see methods: TLS inspection in every proxy-mode environment.
    assert "tls_inspection_policy" in one(plan, "google_network_security_gateway_security_policy")
    assert len(resources(plan, "google_privateca_ca_pool")) == 1 and plan["output"]["allowed_models"]["value"] == []


def test_an_allowlist_adds_tls_inspection_and_generated_rules(plans):
    plan, names = plans["sandbox"], names_for(load_settings("sandbox"))
    assert "privateca.googleapis.com" in {r["service"] for r in resources(plan, "google_project_service")}
    pool = one(plan, "google_privateca_ca_pool")
    assert pool["tier"] == "DEVOPS" and pool["name"] == names.ca_pool
    ca = one(plan, "google_privateca_certificate_authority")
    assert ca["type"] == "SELF_SIGNED" and ca["deletion_protection"] is True
    assert ca["config"]["x509_config"]["ca_options"]["is_ca"] is True
    grant = one(plan, "google_privateca_ca_pool_iam_member")
    assert grant["role"] == "roles/privateca.certificateManager" and "google_project_service_identity" in grant["member"]
    agent = next(v for v in resources(plan, "google_project_service_identity")
                 if v["service"] == "networksecurity.googleapis.com")
    assert agent["provider"] == "google-beta"
    inspection = one(plan, "google_network_security_tls_inspection_policy")
    assert "google_privateca_ca_pool" in inspection["ca_pool"]
    policy = one(plan, "google_network_security_gateway_security_policy")
    assert "google_network_security_tls_inspection_policy" in policy["tls_inspection_policy"]
    rules = sorted(resources(plan, "google_network_security_gateway_security_policy_rule"), key=lambda r: r["priority"])
    assert [r["name"] for r in rules] == ["deny-ambiguous-paths", "deny-write-methods", "allow-repos-0",
                                          "allow-repos-1", "allow-repos-2", "allow-repos-3",
                                          "allow-content-any-path-0", "allow-content-xet-cas-0"]
    assert all(r.get("tls_inspection_enabled") for r in rules if r.get("application_matcher"))
    # The protocol table's shapes, repositories alternated: info, revision, tree and the Xet token route (GET) ...
    api = rules[2]["application_matcher"]
    assert api.startswith("request.method in ['GET'] && request.path.matches('^/api/models/(?:google/txgemma-2b")
    assert "/xet-read-token/[^/]+" in api and "google/txgemma-9b-chat" in api
    # ... and resolve (GET and HEAD); from the jobs' subnet only.
    assert "/resolve/[^/]+/.+$" in rules[3]["application_matcher"] and "'HEAD'" in rules[3]["application_matcher"]
    assert all(r["session_matcher"].startswith("inIpRange(source.ip, '10.8.0.0/25')") for r in rules[2:])
    assert plan["output"]["allowed_models"]["value"] == ["google/txgemma-2b-predict", "google/txgemma-9b-chat"]
    assert "google_privateca_certificate_authority" in plan["output"]["proxy_ca_certificate"]["value"]


def test_proxy_mode_allows_only_hugging_face(plans):
    plan = plans["sandbox"]
    gateway = one(plan, "google_network_services_gateway")
    assert gateway["type"] == "SECURE_WEB_GATEWAY" and gateway["routing_mode"] == "EXPLICIT_ROUTING_MODE"
    rules = sorted(resources(plan, "google_compute_network_firewall_policy_rule"), key=lambda r: r["priority"])
    last = rules[-1]
    assert (last["direction"], last["action"], last["match"]["dest_ip_ranges"]) == ("EGRESS", "deny", ["0.0.0.0/0"])
    names = names_for(load_settings("sandbox"))
    allowed = [r["match"]["dest_ip_ranges"] for r in rules if r["action"] == "allow"]
    assert allowed == [[f"{names.proxy_address}/32"]]
    one(plan, "google_compute_network_attachment")
    subnet = one(plan, "google_compute_subnetwork", name=names.subnet)
    assert subnet["log_config"]["flow_sampling"] == 1.0
    assert resources(plan, "google_access_context_manager_service_perimeter") == []
    assert plan["output"]["egress_enforced"]["value"] is False


def test_egress_pieces_follow_googles_pages(plans):
    plan, names = plans["sandbox"], names_for(load_settings("sandbox"))
    # Secure Web Proxy "known limitations": the first proxy in a network and region provisions its own Cloud NAT
    # gateway for proxy endpoints. A Cloud NAT of ours for ENDPOINT_TYPE_SWG would collide: the proxy owns it, and
    # removes its router on destroy.
    assert resources(plan, "google_compute_router_nat") == [] and resources(plan, "google_compute_router") == []
    assert one(plan, "google_network_services_gateway")["delete_swg_autogen_router_on_destroy"] is True
    # "Use Private Service Connect interface for Vertex AI Training": the job's Google API traffic stays in the
    # producer environment (no Private Google Access, DNS or routes of ours apply), so no private googleapis zone,
    # no restricted-VIP rule claiming to govern it, and no roles/dns.peer (only needed with dns_peering_configs).
    assert resources(plan, "google_dns_managed_zone") == [] and resources(plan, "google_dns_record_set") == []
    assert not any("199.36.153" in str(r["match"]) for r in resources(plan, "google_compute_network_firewall_policy_rule"))
    assert "roles/dns.peer" not in {g["role"] for g in resources(plan, "google_project_iam_member")}
    # Same page: Vertex AI's service agent needs compute.networkAdmin to attach the PSC interface.
    agent_roles = {g["role"] for g in resources(plan, "google_project_iam_member") if "gcp-sa-aiplatform" in g["member"]
                   or "google_project_service_identity" in g["member"]}
    assert agent_roles == {"roles/compute.networkAdmin"}
    # Private Service Connect interfaces page: a subnet used by the network attachment only; the proxy has its own.
    attachment = one(plan, "google_compute_network_attachment")
    job_subnet = one(plan, "google_compute_subnetwork", name=names.subnet)
    proxy_subnet = one(plan, "google_compute_subnetwork", name=names.proxy_subnet)
    gateway = one(plan, "google_network_services_gateway")
    assert len(attachment["subnetworks"]) == 1 and names.subnet in str(resources(plan, "google_compute_subnetwork"))
    assert "proxy-subnet" in gateway["subnetwork"] and "jobs-subnet" in attachment["subnetworks"][0]
    import ipaddress
    assert ipaddress.ip_address(names.proxy_address) in ipaddress.ip_network(proxy_subnet["ip_cidr_range"])
    assert not ipaddress.ip_network(job_subnet["ip_cidr_range"]).overlaps(
        ipaddress.ip_network(proxy_subnet["ip_cidr_range"]))


def test_prod_is_enforced_and_encrypted(plans):
    plan, s = plans["prod"], load_settings("prod")
    perimeter = one(plan, "google_access_context_manager_service_perimeter")
    assert set(perimeter["status"]["restricted_services"]) == {
        "aiplatform.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
        "iamcredentials.googleapis.com", "artifactregistry.googleapis.com"}
    assert plan["output"]["egress_enforced"]["value"] is True
    secrets = resources(plan, "google_secret_manager_secret")
    assert len(secrets) == 2                                             # the read token's and the write token's
    for secret in secrets:
        for replica in secret["replication"]["user_managed"]["replicas"]:   # each with a key in its own location
            assert replica["customer_managed_encryption"]["kms_key_name"] == s.replica_keys[replica["location"]]
            assert f"/locations/{replica['location']}/" in replica["customer_managed_encryption"]["kms_key_name"]
    for b in resources(plan, "google_storage_bucket"):
        assert b["encryption"]["default_kms_key_name"] == s.kms_key
    kms_grants = resources(plan, "google_kms_crypto_key_iam_member")
    # Secret Manager (on both replica keys), Pub/Sub, Storage and Vertex AI agents
    assert len(kms_grants) == 5


def test_open_mode_has_no_network(plans):
    plan = plans["local"]
    assert resources(plan, "google_compute_network") == []
    assert plan["output"]["egress_mode"]["value"] == "open"
    assert plan["output"]["network_attachment"]["value"] == ""


@pytest.mark.parametrize("env", ["sandbox", "prod", "local"])
def test_outputs_are_the_contract(plans, env):
    plan = plans[env]
    assert tuple(sorted(plan["output"])) == tuple(sorted(FIELDS))
    # What `terraform output -json` would print once applied: references resolved to their real values.
    s = load_settings(env)
    expected = outputs_from_settings(s, project_number=s.project_number or "123456789")
    applied = {}
    for key, out in plan["output"].items():
        value = out["value"]
        if isinstance(value, str) and "${" in value:
            value = getattr(expected, key)
        applied[key] = {"value": value, "type": "string", "sensitive": False}
    assert parse_outputs(applied, env=env) == expected


def test_checkov_reports_zero_failed_checks(synth_dir):
    checkov = os.environ.get("CHECKOV") or str(ROOT / ".venv-checkov/bin/checkov")
    from review.report import checkov_env        # offline, as the review runs it (no release check)
    proc = subprocess.run([checkov, "-d", str(synth_dir), "--config-file", str(ROOT / ".checkov.yaml"),
                           "-o", "json"], capture_output=True, text=True, timeout=600, env=checkov_env())
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 100
    assert proc.returncode == 0


def test_checkov_skips_are_each_explained():
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s+- CKV", line):
            assert lines[i - 1].strip().startswith("# " + line.strip()[2:]), f"no reason for {line.strip()}"


SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.mark.parametrize("env", ["sandbox", "dev", "prod", "local"])
def test_plan_matches_snapshot(plans, env):
    """A change to the plan shows in review: refresh with UPDATE_SNAPSHOTS=1 make test and commit the diff."""
    plan = {k: v for k, v in plans[env].items() if k != "//"}
    text = json.dumps(plan, indent=1, sort_keys=True) + "\n"
    path = SNAPSHOTS / f"hfgate-{env}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(f"snapshot {path.name} was missing and has been written; commit it")
    assert text == path.read_text(), "plan changed; review and run UPDATE_SNAPSHOTS=1 make test"


def test_write_only_token_version_keeps_the_value_out_of_plan_and_state(tmp_path):
    """token_write_only = true: a secret version fed by an ephemeral, sensitive variable through secret_data_wo;
    no secret_data anywhere, and the review's HFG006 passes."""
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "sandbox.toml").write_text((ROOT / "config" / "sandbox.toml").read_text() + "\ntoken_write_only = true\n")
    out = tmp_path / "out"
    proc = run_main({"HFGATE_CONFIG_DIR": str(cfg), "HFGATE_ENVS": "sandbox", "CDKTF_OUTDIR": str(out),
                     "HF_TOKEN": SYNTH_CANARY})
    assert proc.returncode == 0, proc.stderr
    text = (out / "stacks" / "hfgate-sandbox" / "cdk.tf.json").read_text()
    plan = json.loads(text)
    versions = list(plan["resource"]["google_secret_manager_secret_version"].values())
    assert len(versions) == 1 and "secret_data" not in versions[0]
    assert versions[0]["secret_data_wo"].startswith("${var.") and "secret_data_wo_version" in versions[0]
    var = next(v for k, v in plan["variable"].items() if k.endswith("hf_token") or "hf-token_hf_token" in k
               or (v.get("sensitive") and v.get("ephemeral")))
    assert var["sensitive"] is True and var["ephemeral"] is True
    assert SYNTH_CANARY not in text
    from review.plan import from_synth
    from review.report import review
    rep = review(from_synth(out / "stacks" / "hfgate-sandbox" / "cdk.tf.json"))
    assert rep["data_protection"]["token_in_state"] is False and rep["ok"]
    assert rep["data_protection"]["versions"][0]["write_only"] is True

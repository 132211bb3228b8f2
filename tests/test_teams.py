"""Teams: several ML teams on one platform (config/dev.toml has two), each with its own token secrets,
identities, buckets, subnet and allowlist; one network, proxy, CA and perimeter. The stacks grant nothing across
teams, the contract is per team, and the review proves isolation: every cross-team path fails it, naming both
teams; each team's allowlist is replayed from its own source range, and the other team's repositories are denied."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from review.plan import from_synth
from review.report import review
from stacks.config import load_settings, parse_settings
from stacks.contract import OutputsError, outputs_from_settings, parse_outputs
from stacks.errors import ConfigError
from stacks.naming import names_for

BASE = {"project_id": "acme-hfgate-x", "region": "us-central1", "prefix": "hfg-x", "subnet_cidr": "10.8.0.0/24",
        "proxy_only_cidr": "10.9.0.0/23"}
TEAM = {"project_id": "acme-hfgate-x-res", "subnet_cidr": "10.8.16.0/28", "submitters": ["group:a@acme.example"]}


def settings_with(teams: dict, **extra):
    return parse_settings("x", {**BASE, **extra, "teams": teams})


@pytest.mark.parametrize("teams, extra, field, words", [
    ({"Research": TEAM}, {}, "teams.Research", "2-10 lowercase"),
    ({"averyveryverylongname": TEAM}, {}, "teams.averyveryverylongname", "2-10 lowercase"),
    ({"res": {**TEAM, "submitters": []}}, {}, "teams.res.submitters", "Workload Identity Federation"),
    ({"res": {**TEAM, "submitters": ["alice@acme.example"]}}, {}, "teams.res.submitters", "IAM member"),
    ({"res": {**TEAM, "subnet_cidr": "10.8.0.0/28"}}, {}, "teams.res.subnet_cidr", "overlaps"),
    ({"res": TEAM, "vis": TEAM}, {}, "teams.vis.subnet_cidr", "overlaps"),
    ({"res": {**TEAM, "subnet_cidr": "8.8.8.0/28"}}, {}, "teams.res.subnet_cidr", "private IPv4"),
    ({"res": {**TEAM, "subnet_cidr": "10.8.16.0/29"}}, {}, "teams.res.subnet_cidr", "/28"),
    ({"res": {**TEAM, "allow_models": ["not a repo"]}}, {}, "teams.res.allow_models", ""),
    ({"res": {**TEAM, "color": "blue"}}, {}, "teams.res.color", "unknown field"),
    ({"res": TEAM}, {"allow_models": ["google/gemma-3-4b-it"]}, "teams", "belong to each team"),
    ({"res": {**TEAM, "machine_type": "a2-highgpu-1g", "accelerator_type": "NVIDIA_L4",
              "accelerator_count": 1}}, {}, "teams.res.machine_type", ""),
])
def test_bad_teams_are_refused_naming_the_field(teams, extra, field, words):
    with pytest.raises(ConfigError) as err:
        settings_with(teams, **extra)
    fields = {f for f, _ in err.value.problems}
    assert field in fields, err.value.problems
    assert words in " ".join(why for f, why in err.value.problems if f == field)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("teams, field, words", [
    ({"res": {k: v for k, v in TEAM.items() if k != "project_id"}}, "teams.res.project_id", "a team is a project"),
    ({"res": {**TEAM, "project_id": "Acme_Research"}}, "teams.res.project_id", "not a valid project id"),
    ({"res": {**TEAM, "project_id": "acme-hfgate-x"}}, "teams.res.project_id", "Shared VPC host"),
    ({"res": TEAM, "vis": {**TEAM, "subnet_cidr": "10.8.16.16/28"}}, "teams.vis.project_id",
     "also team res's project"),
    ({"res": {**TEAM, "project_number": 42}}, "teams.res.project_number", "digits"),
])
def test_a_team_is_a_project_of_its_own(teams, field, words):
    """Google enforces IAM per project: each team needs its own, valid project, never the host's or another
    team's; every such problem is refused at synth (exit 2) with the fix."""
    with pytest.raises(ConfigError) as err:
        settings_with(teams)
    problems = [why for f, why in err.value.problems if f == field]
    assert problems and words in " ".join(problems), err.value.problems
    assert err.value.exit_code == 2


def test_every_team_resource_lives_in_the_teams_project_and_the_network_in_the_host(plans):
    """What the local cloud and Google key on: each resource's `project`. A team's accounts, secrets, buckets,
    topics, Vertex AI and Logging roles and network attachment are in its project; its attachment uses its subnet
    of the host's network (a Shared VPC service project, Network User on that subnet only)."""
    s = load_settings("dev")
    res = plans["dev"]["resource"]
    host = s.project_id
    for team in s.teams:
        n, p = names_for(s, team.name), team.project_id
        def of(rtype, key, *values):
            found = {v[key]: v for v in res[rtype].values() if v[key] in values}
            assert set(found) == set(values), (rtype, values)
            return found.values()
        for v in of("google_service_account", "account_id", n.trainer_account_id, n.submitter_account_id,
                    n.publisher_account_id):
            assert v["project"] == p
        for v in [*of("google_secret_manager_secret", "secret_id", n.secret_id, n.write_secret_id),
                  *of("google_storage_bucket", "name", n.staging_bucket, n.artifacts_bucket, n.mirror_bucket),
                  *of("google_pubsub_topic", "name", n.rotation_topic, n.write_rotation_topic)]:
            assert v["project"] == p
        (attachment,) = of("google_compute_network_attachment", "name", n.network_attachment)
        (subnet,) = of("google_compute_subnetwork", "name", n.subnet)
        assert attachment["project"] == p and subnet["project"] == host
        (service,) = [v for v in res["google_compute_shared_vpc_service_project"].values()
                      if v["service_project"] == p]
        users = [v for v in res["google_compute_subnetwork_iam_member"].values() if f"project-{team.name}_" in
                 v["member"]]
        assert len(users) == 1 and users[0]["role"] == "roles/compute.networkUser"
        assert users[0]["subnetwork"].startswith("${google_compute_subnetwork.") and \
            f"_{team.name}-jobs-subnet_" in users[0]["subnetwork"]
        roles = {(v["role"], v["project"]) for v in res["google_project_iam_member"].values()
                 if f"team-{team.name}_" in v["member"] or f"project-{team.name}_" in v["member"]}
        assert {project for _r, project in roles} == {p}      # Vertex AI, Logging: on the team's project only
        assert {"roles/aiplatform.user", "roles/logging.logWriter", "roles/compute.networkAdmin"} <= \
            {role for role, _p in roles}
    assert [v["project"] for v in res["google_compute_shared_vpc_host_project"].values()] == [host]
    # Nothing of a team's is granted on the host project.
    assert not [v for v in res["google_project_iam_member"].values() if v["project"] == host]


def test_the_perimeter_holds_the_host_and_every_team_project(tmp_path):
    from tests.conftest import ROOT, SYNTH_CANARY, run_main
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "dev.toml").write_text((ROOT / "config" / "dev.toml").read_text().replace(
        'proxy_only_cidr = "10.9.0.0/23"\n', 'proxy_only_cidr = "10.9.0.0/23"\naccess_policy_id = "123"\n'))
    proc = run_main({"HFGATE_CONFIG_DIR": str(cfg), "HFGATE_ENVS": "dev", "CDKTF_OUTDIR": str(tmp_path / "out"),
                     "HF_TOKEN": SYNTH_CANARY})
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((tmp_path / "out" / "stacks" / "hfgate-dev" / "cdk.tf.json").read_text())
    (perimeter,) = plan["resource"]["google_access_context_manager_service_perimeter"].values()
    data = plan["data"]["google_project"]
    inside = {data[ref.split("data.google_project.")[1].split(".")[0]]["project_id"]
              for ref in perimeter["spec"]["resources"]}
    assert inside == {"acme-hfgate-dev", "acme-hfgate-dev-research", "acme-hfgate-dev-vision"}
    # Enforced, the review requires every team's project inside: one dropped fails, naming that project.
    from review.plan import load
    perimeter["status"] = perimeter.pop("spec")
    perimeter.pop("use_explicit_dry_run_spec", None)
    path = tmp_path / "enforced" / "cdk.tf.json"
    path.parent.mkdir()
    path.write_text(json.dumps(plan))
    assert review(load(path))["egress"]["enforced"] is True
    perimeter["status"]["resources"] = [r for r in perimeter["status"]["resources"] if "project-vision" not in r]
    path.write_text(json.dumps(plan))
    eg = review(load(path))["egress"]
    assert eg["enforced"] is False and any("does not hold acme-hfgate-dev-vision" in f["what"]
                                           for f in eg["findings"])


def test_all_teams_allowlists_must_fit_one_proxy_policy():
    many = {f"t{i}": {"subnet_cidr": f"10.8.{16 + i}.0/28", "submitters": ["group:a@acme.example"],
                      "project_id": f"acme-hfgate-x-t{i}",
                      "allow_models": [f"org{i}/m{j}" for j in range(1500)]} for i in range(16)}
    with pytest.raises(ConfigError) as err:
        settings_with(many)
    assert any(f == "teams" and "250" in why for f, why in err.value.problems)


def test_each_team_gets_its_own_resources_and_nothing_on_another_teams(plans):
    plan, s = plans["dev"], load_settings("dev")
    res = plan["resource"]
    teams = [t.name for t in s.teams]
    assert teams == ["research", "vision"]
    for name in teams:
        n = names_for(s, name)
        sa = {v["account_id"] for v in res["google_service_account"].values()}
        assert {n.trainer_account_id, n.submitter_account_id, n.publisher_account_id} <= sa
        secrets = {v["secret_id"] for v in res["google_secret_manager_secret"].values()}
        assert {n.secret_id, n.write_secret_id} <= secrets
        buckets = {v["name"] for v in res["google_storage_bucket"].values()}
        assert {n.staging_bucket, n.artifacts_bucket, n.mirror_bucket} <= buckets
        attachment = next(v for v in res["google_compute_network_attachment"].values()
                          if v["name"] == n.network_attachment)
        subnet = next(v for v in res["google_compute_subnetwork"].values() if v["name"] == n.subnet)
        assert subnet["ip_cidr_range"] == s.team(name).subnet_cidr and len(attachment["subnetworks"]) == 1
        # Every grant on this team's secrets and buckets goes to this team's identities (by construct path).
        for rtype in ("google_secret_manager_secret_iam_member", "google_storage_bucket_iam_member"):
            for v in res.get(rtype, {}).values():
                path = v["//"]["metadata"]["path"]
                if f"/team-{name}/" in path:
                    other = [t for t in teams if t != name]
                    assert not any(f"team-{o}_" in str(v.get("member")) for o in other), (path, v["member"])
    # One network, one proxy, one policy; every team's rules match its own source range only.
    assert len(res["google_compute_network"]) == 1 and len(res["google_network_services_gateway"]) == 1
    assert len(res["google_network_security_gateway_security_policy"]) == 1
    rules = res["google_network_security_gateway_security_policy_rule"].values()
    for name in teams:
        mine = [r for r in rules if r["name"].startswith(f"{name}-")]
        assert mine and all(f"inIpRange(source.ip, '{s.team(name).subnet_cidr}')" in r["session_matcher"]
                            for r in mine)
    assert set(plan["output"]) == {"team_research", "team_vision"}


def _resolved_outputs(env: str) -> dict:
    s = load_settings(env)
    return {f"team_{t.name}": json.loads(outputs_from_settings(s, project_number="123", team=t.name).to_json())
            for t in s.teams}


def test_the_contract_is_per_team_in_both_output_shapes(tmp_path):
    per_team = _resolved_outputs("dev")
    cdktn = {"hfgate-dev": per_team}
    tf = {k: {"value": v, "type": ["object", {}], "sensitive": False} for k, v in per_team.items()}
    for shape in (cdktn, tf):
        o = parse_outputs(shape, env="dev", team="vision")
        assert o.team == "vision" and o.token_secret.endswith("/hfg-dev-vision-hf-token")
        assert o.allowed_models == ("google/gemma-3-4b-it",) and o.machine_type == "a2-highgpu-1g"
        assert o.accelerator_type == "NVIDIA_TESLA_A100"
        with pytest.raises(OutputsError, match="research, vision"):
            parse_outputs(shape, env="dev")
        with pytest.raises(OutputsError, match="no team 'nlp'"):
            parse_outputs(shape, env="dev", team="nlp")
    path = tmp_path / "platform.json"
    path.write_text(json.dumps(cdktn))
    from jobs import api
    import os
    os.environ["HFGATE_TEAM"] = "research"
    try:
        assert api.load_outputs(str(path), env="dev").team == "research"
    finally:
        del os.environ["HFGATE_TEAM"]
    assert api.load_outputs(str(path), env="dev", team="vision").team == "vision"
    # A single-team environment has no team; asking for one is an error, not a silent fallback.
    single = json.loads(outputs_from_settings(load_settings("sandbox"), project_number="1").to_json())
    assert parse_outputs(single, env="sandbox").team == ""
    with pytest.raises(OutputsError, match="not team 'research'"):
        parse_outputs(single, env="sandbox", team="research")


def test_env_delivery_is_refused_with_teams_before_anything_is_read():
    from jobs import api
    from jobs.jobspec import TokenDelivery, TrainRequest
    o = outputs_from_settings(load_settings("dev"), project_number="1", team="research")
    with pytest.raises(api.UsageError, match="no per-job IAM"):
        api.submit(o, TrainRequest(model="google/txgemma-2b-predict", dataset="trl-lib/Capybara",
                                   token_delivery=TokenDelivery.ENV))


def test_a_teams_allowlist_is_its_own_and_the_fix_names_its_table():
    """research may download its own repositories, not vision's; the refusal names research's table to edit."""
    from jobs.allowlist import allowlist_check
    o = outputs_from_settings(load_settings("dev"), project_number="1", team="research")
    assert allowlist_check(o, "google/txgemma-2b-predict", None, "model").status == "ok"
    refused = allowlist_check(o, "google/gemma-3-4b-it", None, "model")         # vision's model
    assert refused.status == "fail" and refused.exit_code == 4
    assert "allow_models of config/dev.toml [teams.research]" in refused.detail
    assert 'add "google/gemma-3-4b-it" to allow_models in config/dev.toml [teams.research]' in refused.fix


def _review(data: dict, tmp_path: Path) -> dict:
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(data))
    return review(from_synth(path))


def test_the_platform_review_passes_with_an_isolation_matrix(plans, tmp_path):
    rep = _review(copy.deepcopy(plans["dev"]), tmp_path)
    assert rep["ok"], (rep["unexpected_readers"], rep["isolation"]["cross_team"], rep["unresolved"])
    iso = rep["isolation"]
    assert iso["teams"] == ["research", "vision"] and iso["cross_team"] == []
    by = {r["principal"]: r for r in iso["rows"]}
    trainer = "serviceAccount:hfg-dev-research-trainer@acme-hfgate-dev-research.iam.gserviceaccount.com"
    assert by[trainer]["team"] == "research" and set(by[trainer]["reaches"]) == {"research"}
    assert "token: reads" in by[trainer]["reaches"]["research"]
    for name, team in rep["teams"].items():
        al = team["allowlist"]
        assert al["ok"] and al["source_ip"]
        others = [d for d in al["replay"] if d["note"] == "another team's repository"]
        assert others and all(d["action"] == "deny" for d in others)


def _member(plan, team, role):
    return next(f"${{google_service_account.{k}.member}}" for k, v in plan["resource"]["google_service_account"].items()
                if v["account_id"] == f"hfg-dev-{team}-{role}")


def _ref(plan, rtype, attr, **match):
    k = next(k for k, v in plan["resource"][rtype].items() if all(v.get(a) == b for a, b in match.items()))
    return f"${{{rtype}.{k}.{attr}}}"


CROSS = {
    "research's trainer reads vision's token": (
        lambda d: ("google_secret_manager_secret_iam_member", {
            "secret_id": _ref(d, "google_secret_manager_secret", "secret_id", secret_id="hfg-dev-vision-hf-token"),
            "role": "roles/secretmanager.secretAccessor", "member": _member(d, "research", "trainer")}),
        ("research", "vision", "token")),
    "research's trainer writes vision's artifacts (plants checkpoints)": (
        lambda d: ("google_storage_bucket_iam_member", {
            "bucket": _ref(d, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-vision-artifacts"),
            "role": "roles/storage.objectCreator", "member": _member(d, "research", "trainer")}),
        ("research", "vision", "checkpoints")),
    "vision's submitter may act as research's publisher": (
        lambda d: ("google_service_account_iam_member", {
            "service_account_id": _ref(d, "google_service_account", "name", account_id="hfg-dev-research-publisher"),
            "role": "roles/iam.serviceAccountTokenCreator", "member": _member(d, "vision", "submitter")}),
        ("vision", "research", "write token")),
    "research's people may act as vision's submitter": (
        lambda d: ("google_service_account_iam_member", {
            "service_account_id": _ref(d, "google_service_account", "name", account_id="hfg-dev-vision-submitter"),
            "role": "roles/iam.serviceAccountTokenCreator", "member": "group:research-ml@acme.example"}),
        ("research", "vision", "token")),
}


@pytest.mark.parametrize("case", sorted(CROSS))
def test_every_cross_team_path_fails_the_review_naming_both_teams(plans, tmp_path, case):
    make, (src, dst, what) = CROSS[case]
    data = copy.deepcopy(plans["dev"])
    rtype, values = make(data)
    data["resource"].setdefault(rtype, {})["cross"] = values
    rep = _review(data, tmp_path)
    assert rep["ok"] is False
    hits = [c for c in rep["isolation"]["cross_team"] if c["from_team"] == src and c["to_team"] == dst]
    assert hits and any(c["what"] == what for c in hits), rep["isolation"]["cross_team"]
    from review.report import to_markdown
    text = to_markdown(rep)
    assert f"team `{src}`" in text and f"team `{dst}`" in text and "Cross-team paths" in text


def _subnet(d, team):
    return _ref(d, "google_compute_subnetwork", "name", name=f"hfg-dev-{team}-jobs")


# What one team's principals may do to the other's data, beyond token paths: every permission, judged by the
# permission table (review.roles), on buckets, jobs, logs, subnets.
DATA_CROSS = {
    "research's trainer reads vision's artifacts (trained models, checkpoints)": (
        lambda d: ("google_storage_bucket_iam_member", {
            "bucket": _ref(d, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-vision-artifacts"),
            "role": "roles/storage.objectViewer", "member": _member(d, "research", "trainer")}),
        ("research", "vision", "bucket acme-hfgate-dev-hfg-dev-vision-artifacts", "storage.objects.get")),
    "research's trainer reads vision's mirror (gated weights vision accepted the terms of)": (
        lambda d: ("google_storage_bucket_iam_member", {
            "bucket": _ref(d, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-vision-mirror"),
            "role": "roles/storage.legacyObjectReader", "member": _member(d, "research", "trainer")}),
        ("research", "vision", "bucket acme-hfgate-dev-hfg-dev-vision-mirror", "storage.objects.get")),
    "vision's submitter sees and cancels research's jobs": (
        lambda d: ("google_project_iam_member", {
            "project": "acme-hfgate-dev-research", "role": "roles/aiplatform.user",
            "member": _member(d, "vision", "submitter")}),
        ("vision", "research", "its project acme-hfgate-dev-research", "aiplatform.customJobs.cancel")),
    "vision's people read research's job logs": (
        lambda d: ("google_project_iam_member", {
            "project": "acme-hfgate-dev-research", "role": "roles/logging.viewer",
            "member": "group:vision-ml@acme.example"}),
        ("vision", "research", "its project acme-hfgate-dev-research", "logging.logEntries.list")),
    "research's Vertex AI agent may use vision's subnet (vision's source range at the proxy)": (
        lambda d: ("google_compute_subnetwork_iam_member", {
            "project": "acme-hfgate-dev", "region": "us-central1", "subnetwork": _subnet(d, "vision"),
            "role": "roles/compute.networkUser",
            "member": _ref(d, "google_project_service_identity", "member", project="acme-hfgate-dev-research",
                           service="aiplatform.googleapis.com")}),
        ("research", "vision", "subnet hfg-dev-vision-jobs", "compute.subnetworks.use")),
    # A job may name another project's attachment by full path (vpc-psc-i-setup); Google documents the Network Admin
    # grant to "the service agent of the same project" as the attachment. Another team's agent holding it on the
    # team's project is the grant that could let its jobs use the team's attachment and source range: it fails.
    "research's Vertex AI agent a Network Admin of vision's project (vision's network attachment)": (
        lambda d: ("google_project_iam_member", {
            "project": "acme-hfgate-dev-vision", "role": "roles/compute.networkAdmin",
            "member": _ref(d, "google_project_service_identity", "member", project="acme-hfgate-dev-research",
                           service="aiplatform.googleapis.com")}),
        ("research", "vision", "its project acme-hfgate-dev-vision: its jobs, logs, buckets, secrets, accounts and"
         " network attachment", "compute.subnetworks.use")),
    "research's submitter a Network User of the whole host project (every team's subnet)": (
        lambda d: ("google_project_iam_member", {
            "project": "acme-hfgate-dev", "role": "roles/compute.networkUser",
            "member": _member(d, "research", "submitter")}),
        ("research", "vision", "its subnet hfg-dev-vision-jobs (through the host project", "compute.subnetworks.use")),
    # Found by the round's outside review: vision's project named by its number, or as `projects/ID`.
    "research's trainer reads vision's objects through vision's project named by its number": (
        lambda d: ("google_project_iam_member", {
            "project": "${data.google_project." + next(k for k in d["data"]["google_project"] if "vision" in k)
                       + ".number}",
            "role": "roles/storage.objectViewer", "member": _member(d, "research", "trainer")}),
        ("research", "vision", "its project acme-hfgate-dev-vision", "storage.objects.get")),
    "research's trainer reads vision's objects through `projects/acme-hfgate-dev-vision`": (
        lambda d: ("google_project_iam_member", {
            "project": "projects/acme-hfgate-dev-vision", "role": "roles/storage.objectViewer",
            "member": _member(d, "research", "trainer")}),
        ("research", "vision", "its project acme-hfgate-dev-vision", "storage.objects.get")),
    "research's trainer on a project only known at apply (it may be vision's)": (
        lambda d: ("google_project_iam_member", {
            "project": "${var.some_project}", "role": "roles/storage.objectViewer",
            "member": _member(d, "research", "trainer")}),
        ("research", "vision", "project ${var.some_project}, not known offline", "storage.objects.get")),
    "a log sink exporting vision's logs (its jobs' output) to research's bucket": (
        lambda d: ("google_logging_project_sink", {
            "project": "acme-hfgate-dev-vision", "name": "to-research", "filter": "",
            "destination": "storage.googleapis.com/" + _ref(
                d, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-research-artifacts")}),
        ("research", "vision", "its logs (its jobs' output), exported to team `research`", "logging.logEntries.list")),
    "a role the table does not know, held by research's submitter on vision's bucket": (
        lambda d: ("google_storage_bucket_iam_member", {
            "bucket": _ref(d, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-vision-staging"),
            "role": "roles/storage.insightsCollectorService", "member": _member(d, "research", "submitter")}),
        ("research", "vision", "bucket acme-hfgate-dev-hfg-dev-vision-staging", "UNKNOWN")),
}


@pytest.mark.parametrize("case", sorted(DATA_CROSS))
def test_anything_one_team_holds_on_the_others_data_fails_naming_both(plans, tmp_path, case):
    make, (src, dst, what, perm) = DATA_CROSS[case]
    data = copy.deepcopy(plans["dev"])
    rtype, values = make(data)
    data["resource"].setdefault(rtype, {})["cross"] = values
    rep = _review(data, tmp_path)
    assert rep["ok"] is False
    hits = [c for c in rep["isolation"]["access"]["cross_team"] if c["from_team"] == src and c["to_team"] == dst]
    assert hits and any(c["what"].startswith(what) and any(perm in p for p in c["held"]) for c in hits), hits
    from review.report import to_markdown
    text = to_markdown(rep)
    failures = text.split("**Isolation failures:**")[1]
    assert f"team `{src}`" in failures and f"team `{dst}`" in failures
    from review.report import to_sarif
    results = to_sarif(rep, "cdk.tf.json")["runs"][0]["results"]
    assert any(r["ruleId"] == "HFG-ISOLATION" and f"team `{src}`" in r["message"]["text"]
               and f"team `{dst}`" in r["message"]["text"] for r in results)


@pytest.mark.parametrize("rtype,values", [
    ("google_storage_bucket_access_control", {"role": "READER", "entity": "user-eve@example.com"}),
    ("google_storage_object_access_control", {"object": "model.safetensors", "role": "READER", "entity": "allUsers"}),
    ("google_storage_default_object_access_control", {"role": "READER", "entity": "allAuthenticatedUsers"}),
])
def test_an_acl_entry_on_a_teams_bucket_fails(plans, tmp_path, rtype, values):
    """Legacy ACL entries (one resource per entry) bypass IAM like the *_acl resources do: HFG009 names them."""
    data = copy.deepcopy(plans["dev"])
    data["resource"].setdefault(rtype, {})["acl"] = {
        "bucket": _ref(data, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-vision-artifacts"),
        **values}
    rep = _review(data, tmp_path)
    hfg009 = next(p for p in rep["policies"] if p["id"] == "HFG009")
    assert rep["ok"] is False and hfg009["passed"] is False
    assert f"{rtype}.acl" in json.dumps(hfg009)


@pytest.mark.parametrize("destination,fails", [
    ("storage.googleapis.com/someone-elses-bucket", True),
    ("bigquery.googleapis.com/projects/other-project/datasets/logs", True),
    ("storage.googleapis.com/acme-hfgate-dev-hfg-dev-vision-artifacts", False),     # the team's own bucket
])
def test_a_log_sink_exporting_a_teams_logs_elsewhere_fails(plans, tmp_path, destination, fails):
    data = copy.deepcopy(plans["dev"])
    data["resource"].setdefault("google_logging_project_sink", {})["out"] = {
        "project": "acme-hfgate-dev-vision", "name": "out", "destination": destination, "filter": ""}
    rep = _review(data, tmp_path)
    hits = [r for r in rep["isolation"]["access"]["no_team"] if r["address"] == "google_logging_project_sink.out"]
    assert rep["ok"] is (not fails) and bool(hits) is fails, hits
    assert all(h["to_team"] == "vision" and destination in h["what"] for h in hits)


def test_a_principal_of_no_team_reading_a_teams_data_fails(plans, tmp_path):
    data = copy.deepcopy(plans["dev"])
    data["resource"]["google_storage_bucket_iam_member"]["eve"] = {
        "bucket": _ref(data, "google_storage_bucket", "name", name="acme-hfgate-dev-hfg-dev-research-artifacts"),
        "role": "roles/storage.objectViewer", "member": "user:eve@example.com"}
    rep = _review(data, tmp_path)
    (hit,) = rep["isolation"]["access"]["no_team"]
    assert rep["ok"] is False and hit["principal"] == "user:eve@example.com" and hit["to_team"] == "research"
    assert "storage.objects.get" in hit["permissions"]


def test_shared_platform_grants_that_read_no_teams_data_pass(plans, tmp_path):
    """Monitoring for the platform's SREs and log writing for a platform agent, on every team's project: roles
    that read no team's data (the table lists none of TEAM_DATA for them) pass, and the matrix shows them."""
    data = copy.deepcopy(plans["dev"])
    iam = data["resource"]["google_project_iam_member"]
    for team in ("research", "vision"):
        iam[f"sre-{team}"] = {"project": f"acme-hfgate-dev-{team}", "role": "roles/monitoring.viewer",
                              "member": "group:platform-sre@acme.example"}
        iam[f"shipper-{team}"] = {"project": f"acme-hfgate-dev-{team}", "role": "roles/logging.logWriter",
                                  "member": "serviceAccount:log-shipper@acme-platform.iam.gserviceaccount.com"}
    rep = _review(data, tmp_path)
    access = rep["isolation"]["access"]
    assert rep["ok"], (access["cross_team"], access["no_team"], access["unknown"], access["ranges"])
    shared = [r for r in access["rows"] if r["principal"] == "group:platform-sre@acme.example"]
    assert {r["to_team"] for r in shared} == {"research", "vision"} and all(r["team"] == "(none)" for r in shared)


def test_source_ranges_are_checked_over_every_address(plans, tmp_path):
    """A rule of research's that matches a range reaching into vision's /28 (one sample address of research's
    range would not show it) fails, naming both teams; so do overlapping team ranges."""
    data = copy.deepcopy(plans["dev"])
    for r in data["resource"]["google_network_security_gateway_security_policy_rule"].values():
        if r["name"].startswith("research-"):
            r["session_matcher"] = r["session_matcher"].replace("'10.8.16.0/28'", "'10.8.16.0/27'")
    rep = _review(data, tmp_path)
    ranges = rep["isolation"]["access"]["ranges"]
    assert rep["ok"] is False and any(p["teams"] == ["research", "vision"] for p in ranges), ranges
    data = copy.deepcopy(plans["dev"])
    for v in data["resource"]["google_compute_subnetwork"].values():
        if v["name"] == "hfg-dev-vision-jobs":
            v["ip_cidr_range"] = "10.8.16.8/29"        # inside research's 10.8.16.0/28
    rep = _review(data, tmp_path)
    assert any("overlaps team" in p["detail"] and p["teams"] == ["research", "vision"]
               for p in rep["isolation"]["access"]["ranges"])


@pytest.mark.parametrize("form", ["synth", "plan"])
def test_a_teams_attachment_listing_another_teams_subnet_fails_naming_both(plans, tmp_path, form):
    """The attachment reserves the team's jobs' addresses in every subnet it lists: research's attachment also
    listing vision's subnet (after its own: the first subnet's range alone looks right) lets research's jobs take
    vision's range at the proxy; the shipped attachments, one subnet each, pass (both plan forms)."""
    from tests.test_review_attacks import _plan
    data = copy.deepcopy(plans["dev"])
    plan, _ = _plan(copy.deepcopy(data), tmp_path / "ok", form, None, None)
    assert review(plan)["isolation"]["access"]["ranges"] == []
    atts = data["resource"]["google_compute_network_attachment"]
    research = next(v for k, v in atts.items() if "research" in k)
    research["subnetworks"] += next(v for k, v in atts.items() if "vision" in k)["subnetworks"]
    plan, _ = _plan(data, tmp_path / "bad", form, None, None)
    rep = review(plan)
    ranges = rep["isolation"]["access"]["ranges"]
    assert rep["ok"] is False and any(p["teams"] == ["research", "vision"] and "network attachment" in p["detail"]
                                      for p in ranges), ranges


def test_a_principal_of_no_team_reaching_a_team_fails_that_team(plans, tmp_path):
    data = copy.deepcopy(plans["dev"])
    data["resource"]["google_secret_manager_secret_iam_member"]["eve"] = {
        "secret_id": _ref(data, "google_secret_manager_secret", "secret_id", secret_id="hfg-dev-research-hf-token"),
        "role": "roles/secretmanager.secretAccessor", "member": "user:eve@example.com"}
    rep = _review(data, tmp_path)
    assert rep["ok"] is False and "user:eve@example.com" in rep["teams"]["research"]["unexpected_readers"]
    assert rep["teams"]["vision"]["unexpected_readers"] == []


def test_rules_without_the_source_range_let_a_team_reach_the_others_repositories(plans, tmp_path):
    """The replay is what proves the allowlist per team: drop the range from research's rules and vision's jobs
    could read research's repositories; the review catches it."""
    data = copy.deepcopy(plans["dev"])
    for r in data["resource"]["google_network_security_gateway_security_policy_rule"].values():
        if r["name"].startswith("research-"):
            r["session_matcher"] = r["session_matcher"].replace("inIpRange(source.ip, '10.8.16.0/28') && ", "")
    rep = _review(data, tmp_path)
    assert rep["ok"] is False and rep["teams"]["vision"]["allowlist"]["ok"] is False
    wrong = [d for d in rep["teams"]["vision"]["allowlist"]["replay"] if not d["as_expected"]]
    assert wrong and all("txgemma" in d["path"] or "Capybara" in d["path"] for d in wrong)


def test_make_synth_summarizes_each_team(synth_dir):
    import subprocess
    import sys
    from tests.conftest import ROOT
    proc = subprocess.run([sys.executable, "-m", "stacks.summary", str(synth_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("hfgate-dev:")[1].split("\nhfgate-")[0]
    assert ("team research (project acme-hfgate-dev-research, a Shared VPC service project of acme-hfgate-dev):"
            " allowlist google/txgemma-2b-predict") in block and "team vision (project acme-hfgate-dev-vision" in block
    assert "hfgate token set --team vision" in block and "None" not in block

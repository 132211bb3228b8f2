"""`hfgate review --live`: the review of what is deployed, read through Cloud Asset Inventory (the official client,
pointed at the local cloud's endpoint), merged with the plan. A grant added by hand after the apply, a grant
inherited from the folder above the project and a key created outside Terraform each fail the review naming their
origin; a deployment that matches its plan passes; what the reviewing identity may not read is UNKNOWN and fails
unless accepted; the drift table lists every difference planted."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from localcloud.asset import DEFAULT_FOLDER, DEFAULT_ORGANIZATION, Asset
from review import live
from review.report import to_sarif
from tests.conftest import ROOT

REVIEWER = "serviceAccount:hfgate-reviewer@hfgate-local.iam.gserviceaccount.com"   # seed: roles/cloudasset.viewer


@pytest.fixture(scope="module")
def deployed(synth_dir):
    from localcloud import LocalCloud
    from review.plan import synthesized
    with LocalCloud(plan=synthesized(synth_dir, "local")) as c:
        yield c


@pytest.fixture
def cloud(deployed):
    """The deployment as the apply left it, again after each test (grants and inventory put back)."""
    grants, assets = set(deployed.grants.triples), dict(deployed.assets.assets)
    held = {k: (sec.rotation, list(sec.versions)) for k, sec in deployed.secrets.secrets.items()}
    audit = list(deployed.secrets.audit)
    yield deployed
    deployed.secrets.audit[:] = audit
    deployed.grants.triples = grants
    deployed.assets.assets, deployed.assets.removed = assets, set()
    for k, (rotation, versions) in held.items():       # what a test changed with Secret Manager's own API
        deployed.secrets.secrets[k].rotation, deployed.secrets.secrets[k].versions = rotation, versions


def review_live(cloud, member: str = REVIEWER, accepts: dict | None = None) -> dict:
    with cloud.environ(as_member=member):
        state = live.read(live.projects_of(cloud.plan))
    return live.review(cloud.plan, state, accepts)


def token_secret_id(cloud) -> str:
    return cloud.outputs.token_secret.rsplit("/", 1)[-1]


def test_a_deployment_that_matches_its_plan_passes(cloud):
    rep = review_live(cloud)
    assert rep["ok"], (rep["unexpected_readers"], rep["unresolved"])
    assert rep["live"]["deployed_only_paths"] == [] and rep["live"]["drift"] == [] and rep["live"]["unknowns"] == []
    # It read the project, its folder and its organization, as the hierarchy has them.
    assert rep["live"]["ancestry"] == {cloud.project_id: [f"folders/{DEFAULT_FOLDER}",
                                                          f"organizations/{DEFAULT_ORGANIZATION}"]}
    assert f"organizations/{DEFAULT_ORGANIZATION} (IAM policy)" in rep["live"]["scopes_read"]
    # The reviewer reads and changes nothing: every call was a search or a list.
    assert {m for m, who, _ in cloud.assets.calls if who == REVIEWER} == {"SearchAllIamPolicies",
                                                                           "SearchAllResources", "ListAssets"}


def test_a_grant_added_by_hand_on_the_secret_fails_naming_it(cloud):
    """The platform admin adds a reader to the token's secret with Secret Manager's own setIamPolicy."""
    from google.iam.v1 import iam_policy_pb2

    from jobs.endpoints import secret_manager
    with cloud.environ(as_member=cloud.admin):
        client = secret_manager()
        policy = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(
            resource=cloud.outputs.token_secret))
        policy.bindings.add(role="roles/secretmanager.secretAccessor", members=["user:mallory@example.com"])
        client.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=cloud.outputs.token_secret,
                                                                          policy=policy))
    rep = review_live(cloud)
    assert not rep["ok"] and "user:mallory@example.com" in rep["unexpected_readers"]
    row = next(r for r in rep["token_readers"] if r["principal"] == "user:mallory@example.com")
    assert row["kind"] == "reads"
    assert row["origin"] == f"on the secret {token_secret_id(cloud)}, not in the plan (added after the apply)"
    assert any(p["principal"] == "user:mallory@example.com" and "not in the plan" in p["origin"]
               for p in rep["live"]["deployed_only_paths"])
    assert "user:mallory@example.com" in "\n".join(live.markdown(rep["live"]))


@pytest.mark.parametrize("role", ["roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser"])
def test_a_grant_to_act_as_the_trainer_added_by_hand_fails_naming_it(cloud, role):
    """Someone made able to act as a token holder (mint the trainer's tokens, or run things as it) after the apply,
    on the trainer account's own IAM policy: a path to the token that exists only in the deployed state."""
    trainer = cloud.outputs.trainer_email
    cloud.assets.grant("user:trudy@example.com", role, f"serviceAccount:{trainer}")
    rep = review_live(cloud)
    assert not rep["ok"] and "user:trudy@example.com" in rep["unexpected_readers"]
    row = next(r for r in rep["token_readers"] if r["principal"] == "user:trudy@example.com")
    assert "not in the plan" in row["origin"] and trainer in row["origin"]


def test_an_inherited_folder_grant_fails_naming_the_folder(cloud):
    cloud.assets.grant("user:eve@example.com", "roles/secretmanager.secretAccessor", f"folder:{DEFAULT_FOLDER}")
    rep = review_live(cloud)
    assert not rep["ok"] and "user:eve@example.com" in rep["unexpected_readers"]
    row = next(r for r in rep["token_readers"] if r["principal"] == "user:eve@example.com")
    assert row["origin"] == f"inherited from folders/{DEFAULT_FOLDER}"
    assert f"inherited from folders/{DEFAULT_FOLDER}" in row["how"]
    # The project's own policy (HFG001: no folder-level secret access) names it too.
    hfg001 = next(p for p in rep["policies"] if p["id"] == "HFG001")
    assert not hfg001["passed"] and any(v.get("origin") == f"inherited from folders/{DEFAULT_FOLDER}"
                                        for v in hfg001["violations"])


def test_a_key_created_outside_terraform_fails_naming_it(cloud):
    email = cloud.outputs.trainer_email
    key = cloud.assets.create_key(email)
    rep = review_live(cloud)
    assert not rep["ok"] and f"resource:{key}" in rep["unexpected_readers"]
    row = next(r for r in rep["token_readers"] if r["principal"] == f"resource:{key}")
    assert row["origin"] == "key created outside Terraform" and row["via"] == f"serviceAccount:{email}"
    assert {"what": "key", "change": "extra", "target": email, "plan": "", "deployed": key,
            "origin": "key created outside Terraform"} in rep["live"]["drift"]
    sarif = to_sarif(rep, "plan.json")
    assert any(r["ruleId"] == "HFG-READER" and "key created outside Terraform" in r["message"]["text"]
               for r in sarif["runs"][0]["results"])


def test_what_the_caller_cannot_read_is_unknown_and_fails_unless_accepted(cloud):
    """A reviewer who may search the project but not its folder or organization: those policies are UNKNOWN."""
    narrow = "serviceAccount:ci-review@hfgate-local.iam.gserviceaccount.com"
    cloud.assets.grant(narrow, "roles/cloudasset.viewer", f"project:{cloud.project_id}")
    rep = review_live(cloud, narrow)
    folder, org = f"folders/{DEFAULT_FOLDER}", f"organizations/{DEFAULT_ORGANIZATION}"
    assert not rep["ok"] and {folder, org} <= set(rep["unresolved"])
    unknown = next(u for u in rep["live"]["unknowns"] if u["address"] == folder)
    assert unknown["field"] == "searchAllIamPolicies" and "PermissionDenied" in unknown["why"]
    accepts = {"unknown": [{"address": folder, "reason": "the folder is reviewed by the org team (SEC-1)"},
                           {"address": org, "reason": "the org is reviewed by the org team (SEC-1)"}],
               "reader": []}
    assert review_live(cloud, narrow, accepts)["ok"]
    # Nobody granted anything: nothing at all can be read, and the review says so instead of passing.
    rep = review_live(cloud, "serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com")
    assert not rep["ok"]
    assert {f"projects/{cloud.project_id}", f"projects/{cloud.project_id} (ancestry)"} <= set(rep["unresolved"])


def test_the_drift_table_lists_every_difference_planted(cloud):
    secret = token_secret_id(cloud)
    trainer = f"serviceAccount:{cloud.outputs.trainer_email}"
    planned = next(t for t in cloud.grants.triples if t[0] == trainer and t[2] == f"secret:{secret}")
    cloud.grants.triples.discard(planned)                                          # missing grant
    cloud.assets.grant("user:ops@example.com", "roles/logging.viewer", f"project:{cloud.project_id}")  # extra
    submitter = f"serviceAccount:{cloud.outputs.submitter_email}"
    on_trainer = next(t for t in cloud.grants.triples if t[0] == submitter and t[2] == trainer)
    cloud.assets.grant(submitter, "roles/iam.serviceAccountViewer", on_trainer[2])  # changed (one more role)
    bucket = cloud.outputs.mirror_bucket.removeprefix("gs://")
    cloud.assets.remove(f"//storage.googleapis.com/{bucket}")                      # missing resource
    cloud.assets.add(Asset("//storage.googleapis.com/hand-made-bucket", "storage.googleapis.com/Bucket",
                           "bucket:hand-made-bucket", "hand-made-bucket"))         # extra resource
    key = cloud.assets.create_key(cloud.outputs.submitter_email)                   # extra key
    rep = review_live(cloud)
    drift = rep["live"]["drift"]
    rows = {(r["what"], r["change"], r["target"], r.get("member", "")) for r in drift}
    assert rows == {
        ("grant", "missing", f"secret:{secret}", trainer),
        ("grant", "extra", f"project:{cloud.project_id}", "user:ops@example.com"),
        ("grant", "changed", on_trainer[2], submitter),
        ("bucket", "missing", bucket, ""),
        ("bucket", "extra", "hand-made-bucket", ""),
        ("key", "extra", cloud.outputs.submitter_email, ""),
    }, drift
    sarif = to_sarif(rep, "plan.json")["runs"][0]["results"]
    assert len([r for r in sarif if r["ruleId"] == "HFG-DRIFT"]) == len(drift) == 6
    changed = next(r for r in drift if r["change"] == "changed")
    assert changed["deployed"] == sorted([on_trainer[1], "roles/iam.serviceAccountViewer"])
    assert next(r for r in drift if r["what"] == "key")["deployed"] == key


@pytest.fixture(scope="module")
def teams_deployed(synth_dir):
    from localcloud import LocalCloud
    from review.plan import synthesized
    with LocalCloud(plan=synthesized(synth_dir, "local-teams"), env="local-teams") as c:
        yield c


@pytest.fixture
def teams(teams_deployed):
    grants, assets = set(teams_deployed.grants.triples), dict(teams_deployed.assets.assets)
    yield teams_deployed
    teams_deployed.grants.triples = grants
    teams_deployed.assets.assets, teams_deployed.assets.removed = assets, set()


def test_team_isolation_is_judged_on_the_deployed_state_naming_the_origin(teams):
    """Two teams in two projects: a clean deployment is isolated; a grant made by hand giving alpha's submitter
    beta's token fails the isolation check, naming both teams and where the grant comes from."""
    c = teams
    clean = review_live(c)
    assert clean["ok"] and clean["live"]["drift"] == [], (clean["unresolved"], clean["live"]["drift"])
    assert set(clean["live"]["ancestry"]) == {"hfgate-local-teams", "hfgate-lt-alpha", "hfgate-lt-beta"}
    alpha, beta = c.team_outputs["alpha"], c.team_outputs["beta"]
    secret = beta.token_secret.rsplit("/", 1)[-1]
    c.assets.grant(f"serviceAccount:{alpha.submitter_email}", "roles/secretmanager.secretAccessor",
                   f"secret:{secret}")
    rep = review_live(c)
    assert not rep["ok"]
    cross = [x for x in rep["isolation"]["access"]["cross_team"]
             if x["principal"] == f"serviceAccount:{alpha.submitter_email}"]
    assert cross and all(x["origin"] == f"on the secret {secret}, not in the plan (added after the apply)"
                         for x in cross)
    assert {(x["from_team"], x["to_team"]) for x in cross} == {("alpha", "beta")}


def test_a_key_of_a_teams_trainer_fails_that_team_once(teams):
    key = teams.assets.create_key(teams.team_outputs["beta"].trainer_email)
    rep = review_live(teams)
    beta = rep["teams"]["beta"]
    assert not rep["ok"] and not beta["ok"] and rep["teams"]["alpha"]["ok"]
    assert f"resource:{key}" in rep["unexpected_readers"]
    assert [r["origin"] for r in beta["token_readers"] if r["principal"] == f"resource:{key}"] == \
        ["key created outside Terraform"]


def test_hfgate_review_live_writes_the_three_reports_and_exits_by_verdict(teams, tmp_path, synth_dir):
    """The command a scheduled CI job runs, as the read-only reviewer; and the same review from Python."""
    env = {**teams.env(as_member=REVIEWER), "CDKTF_OUTDIR": str(synth_dir)}

    def run(out):
        return subprocess.run([sys.executable, "-m", "jobs.cli", "review", "--live", "--env", "local-teams",
                               "--out", str(out), "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=300)
    clean = run(tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert json.loads(clean.stdout)["live"]["drift"] == []
    teams.assets.grant("user:eve@example.com", "roles/secretmanager.secretAccessor",
                       f"organization:{DEFAULT_ORGANIZATION}")
    dirty = run(tmp_path / "dirty")
    assert dirty.returncode == 1 and "user:eve@example.com" in dirty.stderr
    md = (tmp_path / "dirty" / "REPORT.md").read_text()
    assert "## Deployed state (Cloud Asset Inventory)" in md
    assert f"inherited from organizations/{DEFAULT_ORGANIZATION}" in md
    sarif = json.loads((tmp_path / "dirty" / "report.sarif").read_text())
    assert any(f"inherited from organizations/{DEFAULT_ORGANIZATION}" in r["message"]["text"]
               for r in sarif["runs"][0]["results"])
    from jobs import api
    with teams.environ(as_member=REVIEWER):
        import os
        os.environ["CDKTF_OUTDIR"] = str(synth_dir)
        report = api.review_live("local-teams", out=tmp_path / "api")
    assert not report["ok"] and any(p.get("origin") == f"inherited from organizations/{DEFAULT_ORGANIZATION}"
                                    for p in report["live"]["deployed_only_paths"])


def test_an_unreachable_inventory_is_a_transient_error_not_a_verdict(cloud, monkeypatch):
    import socket

    from jobs.errors import Transient
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]           # nothing listens there once the socket is closed
    with cloud.environ(as_member=REVIEWER):
        monkeypatch.setenv("HFGATE_ASSET_ENDPOINT", f"127.0.0.1:{closed}")
        with pytest.raises(Transient) as err:
            live.read(live.projects_of(cloud.plan), retry_s=2)
    assert err.value.exit_code == 6 and "HFGATE_ASSET_ENDPOINT" in err.value.fix


def test_a_planned_folder_grant_that_is_deployed_is_not_drift(tmp_path):
    """The plan names the folder `folders/F`, Cloud Asset Inventory `//cloudresourcemanager.googleapis.com/folders/F`:
    the same grant, no drift and no deployed-only path; the same member with a role the plan does not give is."""
    from review.plan import load
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps({"provider": {"google": [{"project": "p1"}]}, "resource": {
        "google_folder_iam_member": {"ops": {"folder": "folders/42", "role": "roles/logging.viewer",
                                             "member": "group:ops@example.com"}}}}))
    plan = load(path)
    state = live.Deployed(bindings=[("group:ops@example.com", "roles/logging.viewer", "folder:42",
                                     "//cloudresourcemanager.googleapis.com/folders/42")],
                          ancestors={"p1": ["folders/42"]}, scopes_read=["folders/42 (IAM policy)"])
    merged, origins, drift = live.merge(plan, state)
    assert drift == [] and origins == {} and len(merged.resources) == 1
    state.bindings.append(("group:ops@example.com", "roles/owner", "folder:42",
                           "//cloudresourcemanager.googleapis.com/folders/42"))
    merged, origins, drift = live.merge(plan, state)
    assert list(origins.values()) == ["inherited from folders/42"]
    assert [(r["change"], r["plan"], r["deployed"]) for r in drift] == [
        ("changed", ["roles/logging.viewer"], ["roles/logging.viewer", "roles/owner"])]


def test_the_ancestry_comes_from_any_result_and_is_unknown_when_nothing_shows_it(cloud):
    cloud.assets.remove(f"//cloudresourcemanager.googleapis.com/projects/{cloud.project_id}")
    rep = review_live(cloud)
    assert rep["ok"] and rep["live"]["ancestry"][cloud.project_id] == [f"folders/{DEFAULT_FOLDER}",
                                                                      f"organizations/{DEFAULT_ORGANIZATION}"]
    for name in [*cloud.assets.assets, *(a.name for a in cloud.assets._versions())]:
        cloud.assets.remove(name)           # nothing left in the project (its secrets included)
    rep = review_live(cloud)
    assert not rep["ok"] and f"projects/{cloud.project_id} (ancestry)" in rep["unresolved"]


def test_the_inventory_pages_its_answers_as_the_client_expects(cloud):
    """The official client follows next_page_token: small pages give the same results as one large page."""
    from jobs.endpoints import asset
    scope = f"projects/{cloud.project_id}"
    with cloud.environ(as_member=REVIEWER):
        client = asset()
        small = [r.name for r in client.search_all_resources(request={"scope": scope, "page_size": 2})]
        large = [r.name for r in client.search_all_resources(request={"scope": scope, "page_size": 500})]
        policies = [r.resource for r in client.search_all_iam_policies(request={"scope": scope, "page_size": 1})]
    assert len(small) > 2 and small == large
    assert len(policies) == len(set(policies)) > 1


def test_attributes_changed_after_the_apply_are_changed_rows(cloud):
    """A bucket's public access prevention and uniform access changed by hand, and the token secret's rotation
    changed with Secret Manager's own UpdateSecret: each a "changed" row naming plan and deployed values, read from
    ListAssets' resource data; a clean deployment has none (test_a_deployment_that_matches_its_plan_passes)."""
    import datetime

    from google.cloud import secretmanager_v1 as smv1
    from google.protobuf import duration_pb2, field_mask_pb2

    from jobs.endpoints import secret_manager
    bucket = cloud.outputs.mirror_bucket.removeprefix("gs://")
    full = f"//storage.googleapis.com/{bucket}"
    cloud.assets.change(full, "iamConfiguration.publicAccessPrevention", "inherited")
    cloud.assets.change(full, "iamConfiguration.uniformBucketLevelAccess.enabled", False)
    with cloud.environ(as_member=cloud.admin):
        soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
        secret_manager().update_secret(request={
            "secret": smv1.Secret(name=cloud.outputs.token_secret, rotation=smv1.Rotation(
                rotation_period=duration_pb2.Duration(seconds=3650 * 86400), next_rotation_time=soon)),
            "update_mask": field_mask_pb2.FieldMask(paths=["rotation"])})
    rep = review_live(cloud)
    changed = {r["target"]: r for r in rep["live"]["drift"] if r["change"] == "changed"}
    assert set(changed) == {f"{bucket} iamConfiguration.publicAccessPrevention",
                            f"{bucket} iamConfiguration.uniformBucketLevelAccess.enabled",
                            f"{token_secret_id(cloud)} rotation.rotationPeriod"}, rep["live"]["drift"]
    pap = changed[f"{bucket} iamConfiguration.publicAccessPrevention"]
    assert pap["plan"].endswith(": enforced") and pap["deployed"] == f"{full}: inherited"
    assert pap["origin"] == "changed after the apply (outside Terraform)"
    rotation = changed[f"{token_secret_id(cloud)} rotation.rotationPeriod"]
    assert rotation["deployed"].endswith(f": {3650 * 86400}s") and not rotation["plan"].endswith(f"{3650 * 86400}s")
    assert "rotation.rotationPeriod" in "\n".join(live.markdown(rep["live"]))


def test_a_proxy_rule_whose_matcher_or_priority_changed_is_a_changed_row(synth_dir):
    """dev's proxy rules (the local stacks have none: open egress) against resource data as ListAssets shows it:
    the same values are no drift; a widened session matcher and a moved priority are changed rows."""
    from review.plan import load, synthesized
    plan = load(synthesized(synth_dir, "dev"))
    rule = plan.of_type("google_network_security_gateway_security_policy_rule")[0]
    v = plan.resolved(rule)
    full = f"//networksecurity.googleapis.com/projects/p/locations/r/gatewaySecurityPolicies/g/rules/{v['name']}"
    data = {"priority": v["priority"], "sessionMatcher": v["session_matcher"], "basicProfile": v["basic_profile"],
            "enabled": v.get("enabled", True), **({"applicationMatcher": v["application_matcher"]}
                                                   if v.get("application_matcher") else {})}
    state = live.Deployed(resources={full: ("networksecurity.googleapis.com/GatewaySecurityPolicyRule", v["name"],
                                            {})}, data={full: data})
    assert [r for r in live._attribute_drift(plan, state)] == []
    state.data[full] = data | {"sessionMatcher": "true", "priority": float(v["priority"]) + 1000}
    rows = {r["target"]: r for r in live._attribute_drift(plan, state)}
    assert set(rows) == {f"{v['name']} sessionMatcher", f"{v['name']} priority"}
    assert rows[f"{v['name']} sessionMatcher"]["deployed"] == f"{full}: true"
    assert rows[f"{v['name']} priority"]["deployed"] == f"{full}: {int(v['priority']) + 1000}"


ADMIN_ACCEPTED = {"unknown": [], "reader": [{"principal": "user:platform@example.com",
                                              "reason": "the platform admin sets the tokens"}]}
MALLORY = "user:mallory@example.com"


def add_version(cloud, member: str, secret: str | None = None):
    from jobs.endpoints import secret_manager
    with cloud.environ(as_member=member):
        return secret_manager().add_secret_version(request={"parent": secret or cloud.outputs.token_secret,
                                                            "payload": {"data": b"hf_not_a_real_token"}})


def added_version_rows(rep: dict) -> list[dict]:
    return [p for p in rep["live"]["deployed_only_paths"] if p.get("kind") in ("added-version", "enabled-version")]


def test_secret_versions_are_listed_with_create_time_state_and_who_added_them(cloud):
    """A version added by the platform admin with Secret Manager's own API (what `hfgate token set` calls): Cloud
    Asset Inventory gives its create time and state, the Admin Activity audit log who added it. The admin's grant
    is the local cloud's, above what the review reads: its version fails naming it until the reviewer accepts the
    admin (examples/review-accept-local.toml), then passes."""
    added = add_version(cloud, cloud.admin)
    number = added.name.rsplit("/", 1)[-1]
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    rows = [v for v in rep["live"]["secret_versions"] if v["version"].endswith(
        f"/secrets/{token_secret_id(cloud)}/versions/{number}")]
    assert len(rows) == 1 and rows[0]["state"] == "ENABLED"
    assert rows[0]["created"] == added.create_time.isoformat()
    assert rows[0]["added_by"] == "user:platform@example.com (AddSecretVersion)"
    text = "\n".join(live.markdown(rep["live"]))
    assert rows[0]["version"] in text and "user:platform@example.com (AddSecretVersion)" in text
    assert "hf_not_a_real_token" not in text
    assert rep["ok"], rep["unresolved"]
    # Not accepted: the admin's version is named, with its origin.
    rep = review_live(cloud)
    assert not rep["ok"] and "user:platform@example.com" in rep["unexpected_readers"]
    [row] = added_version_rows(rep)
    assert row["principal"] == "user:platform@example.com" and row["address"] == rows[0]["version"]
    assert f"version {number} added by user:platform@example.com" in row["origin"]
    # The audit log was read as the reviewer, with Cloud Logging's entries:list (roles/logging.viewer).
    assert (REVIEWER, "roles/logging.viewer", "*") in cloud.grants.triples


def _read(cloud, member: str = REVIEWER):
    with cloud.environ(as_member=member):
        return live.read(live.projects_of(cloud.plan))


def test_a_version_added_by_one_the_plan_does_not_allow_fails_naming_them(cloud):
    """mallory is granted Secret Version Adder on the token secret by hand, adds a version, and the grant is removed:
    no policy holds her secretmanager.versions.add any more, and the version (its value hers) fails the review naming
    her, from the Admin Activity audit log."""
    sid = token_secret_id(cloud)
    grant = (MALLORY, "roles/secretmanager.secretVersionAdder", f"secret:{sid}")
    cloud.grants.add(*grant)
    added = add_version(cloud, MALLORY)
    cloud.grants.triples.discard(grant)
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    assert not rep["ok"] and MALLORY in rep["unexpected_readers"]
    [row] = added_version_rows(rep)
    number = added.name.rsplit("/", 1)[-1]
    assert row["principal"] == MALLORY and row["kind"] == "added-version"
    assert f"version {number} added by {MALLORY}" in row["origin"]
    assert "who holds no secretmanager.versions.add" in row["origin"]
    md = "\n".join(live.markdown(rep["live"]))
    assert MALLORY in md and "hf_not_a_real_token" not in md
    # While the hand-made grant stands, the grant is the finding (a path that exists only in the deployed state);
    # the version itself was added by one the deployed grants allow.
    cloud.grants.add(*grant)
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    assert not rep["ok"] and added_version_rows(rep) == []
    assert any(p["principal"] == MALLORY and "not in the plan" in p.get("origin", "")
               for p in rep["live"]["deployed_only_paths"])


def test_a_version_of_the_write_token_is_judged_too(cloud):
    from review.graph import Targets
    secret = f"projects/{cloud.project_id}/secrets/{Targets.of(cloud.plan).write_secret_id}"
    grant = (MALLORY, "roles/secretmanager.secretVersionAdder", "secret:" + secret.rsplit("/", 1)[-1])
    cloud.grants.add(*grant)
    add_version(cloud, MALLORY, secret)
    cloud.grants.triples.discard(grant)
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    assert not rep["ok"] and MALLORY in rep["write_token"]["unexpected_readers"]
    [row] = added_version_rows(rep)
    assert "of the write token" in row["how"]


def test_a_version_whose_audit_entry_cannot_be_read_is_unknown(cloud):
    """The reviewer without roles/logging.viewer: who added the version is UNKNOWN (it fails unless accepted); a
    version with no audit entry at all (planted past the API, as one older than the log's 400 days) is UNKNOWN too."""
    added = add_version(cloud, cloud.admin)
    name = added.name
    cloud.grants.triples.discard((REVIEWER, "roles/logging.viewer", "*"))
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    [u] = [u for u in rep["live"]["unknowns"] if u["field"] == "added by"]
    assert u["address"] == name and "roles/logging.viewer" in u["why"] and not u["accepted"]
    assert not rep["ok"] and name in rep["unresolved"] and added_version_rows(rep) == []
    accepted = {**ADMIN_ACCEPTED, "unknown": [{"address": name, "reason": "checked in the console"}]}
    assert live.review(cloud.plan, _read(cloud), accepted)["ok"]
    cloud.grants.add(REVIEWER, "roles/logging.viewer", "*")
    cloud.secrets.audit.clear()
    rep = live.review(cloud.plan, _read(cloud), ADMIN_ACCEPTED)
    [u] = [u for u in rep["live"]["unknowns"] if u["field"] == "added by"]
    assert u["address"] == name and "no AddSecretVersion entry" in u["why"] and not rep["ok"]


def test_the_local_inventory_serves_the_organizations_perimeter_as_access_policy(cloud):
    """ListAssets with content type ACCESS_POLICY at the organization: the perimeter's ServicePerimeter fields, read
    into the deployed state; a reviewer without cloudasset.assets.listAccessPolicy there gets it UNKNOWN."""
    cloud.assets.perimeter("123456789012", "hfg_local", {"status": {
        "resources": ["projects/1"], "restricted_services": ["secretmanager.googleapis.com"]}})
    with cloud.environ(as_member=REVIEWER):
        state = live.read(live.projects_of(cloud.plan))
    org = f"organizations/{DEFAULT_ORGANIZATION}"
    assert f"{org} (access policy)" in state.scopes_read and state.perimeters_read == [org]
    full = "//accesscontextmanager.googleapis.com/accessPolicies/123456789012/servicePerimeters/hfg_local"
    assert state.perimeters[full]["status"]["restricted_services"] == ["secretmanager.googleapis.com"]
    narrow = "serviceAccount:narrow-reader@hfgate-local.iam.gserviceaccount.com"
    cloud.assets.grant(narrow, "roles/cloudasset.viewer", f"project:{cloud.project_id}")
    cloud.assets.grant(narrow, "roles/cloudasset.viewer", f"folder:{DEFAULT_FOLDER}")
    with cloud.environ(as_member=narrow):
        state = live.read(live.projects_of(cloud.plan))
    assert state.perimeters == {} and (org, "listAssets (ACCESS_POLICY)") in {(u["address"], u["field"])
                                                                             for u in state.unknowns}


def test_a_perimeter_switched_to_dry_run_or_dropping_a_service_fails_naming_its_origin(synth_dir):
    """prod's perimeter (enforced) against the deployed one as Cloud Asset Inventory lists it: the same perimeter
    passes the egress model as the plan does; switched to dry-run, or with a token-path service dropped from its
    restricted services after the apply, the egress section fails naming the deployed perimeter as the origin."""
    from review.plan import load, synthesized
    from stacks.facts import TOKEN_PATH_SERVICES
    plan = load(synthesized(synth_dir, "prod"))
    r = plan.of_type(live.PLAN_PERIMETER)[0]
    v = plan.resolved(r)
    full = f"//accesscontextmanager.googleapis.com/{v['name']}"
    numbers = {p: str(1000 + i) for i, p in enumerate(live.projects_of(plan))}   # as the search results show them
    status = dict(v["status"], resources=[f"projects/{n}" for n in numbers.values()])

    def judged(fields: dict) -> dict:
        state = live.Deployed(perimeters={full: fields}, perimeters_read=["organizations/1"], numbers=numbers)
        return live.review(plan, state)
    same = judged({"status": status})
    assert not [r for r in same["live"]["drift"] if r["what"] == "perimeter"]
    assert not [f for f in same["egress"]["findings"] if f.get("origin")]
    dropped = next(s for s in TOKEN_PATH_SERVICES if s in status["restricted_services"])
    for fields, says in (({"spec": status, "use_explicit_dry_run_spec": True}, "dry-run only"),
                         ({"status": dict(status, restricted_services=[s for s in status["restricted_services"]
                                                                       if s != dropped])},
                          f"does not restrict {dropped}")):
        rep = judged(fields)
        assert not rep["egress"]["ok"] and not rep["ok"]
        found = [f for f in rep["egress"]["findings"] if says in f["what"]]
        assert found and all(f["origin"].startswith(f"the perimeter {v['name']} as deployed:") for f in found), \
            rep["egress"]["findings"]
        row = next(r for r in rep["live"]["drift"] if r["what"] == "perimeter")
        assert row["change"] == "changed" and row["origin"] == found[0]["origin"]
        assert any(p.get("origin") == row["origin"] for p in rep["live"]["deployed_only_paths"])
    outside = judged({"status": dict(status, resources=["projects/999"])})      # the project taken out
    row = next(r for r in outside["live"]["drift"] if r["what"] == "perimeter")
    assert f"no longer holds {plan.default_project()}" in row["origin"] and not outside["egress"]["ok"]
    gone = live.review(plan, live.Deployed(perimeters_read=["organizations/1"]))
    assert [r["change"] for r in gone["live"]["drift"] if r["what"] == "perimeter"] == ["missing"]
    assert not gone["egress"]["ok"]


def test_grants_on_the_rotation_topic_are_compared(cloud):
    """Pub/Sub topics are owned resources whose grants the inventory shows (//pubsub.googleapis.com/...): a
    publisher added by hand is an extra grant named on the topic, the planned publisher removed is a missing one."""
    topic = next(t for t in cloud.grants.triples if t[2].startswith("pubsub_topic:"))
    name = topic[2].split(":", 1)[1]
    cloud.grants.triples.discard(topic)
    cloud.assets.grant("user:mallory@example.com", "roles/pubsub.publisher", topic[2])
    rep = review_live(cloud)
    rows = {(r["change"], r["member"]): r for r in rep["live"]["drift"] if r["target"] == topic[2]}
    agent = live._normalize(topic[0], rep["live"]["projects"])     # the service agent, by its project's number
    assert set(rows) == {("missing", agent), ("extra", "user:mallory@example.com")}, rep["live"]["drift"]
    assert rows[("extra", "user:mallory@example.com")]["origin"] == \
        f"on the topic {name}, not in the plan (added after the apply)"


def test_a_secret_recreated_with_other_replication_is_a_changed_row(cloud):
    """Replication cannot be changed in place (Secret Manager refuses it), so a different one deployed means the
    secret was recreated by hand: the plan's user-managed locations against an automatic one is a changed row."""
    with cloud.environ(as_member=REVIEWER):
        state = live.read(live.projects_of(cloud.plan))
    full = next(n for n, (t, name, _) in state.resources.items()
                if t == "secretmanager.googleapis.com/Secret" and name == token_secret_id(cloud))
    assert live._attribute_drift(cloud.plan, state) == []
    state.data[full] = dict(state.data[full], replication={"automatic": {}})
    rows = live._attribute_drift(cloud.plan, state)
    assert [(r["target"], r["deployed"]) for r in rows] == [(f"{token_secret_id(cloud)} replication",
                                                             f"{full}: automatic")]
    assert rows[0]["plan"].split(": ", 1)[1].startswith("user-managed: ")


def test_an_asset_type_the_inventory_does_not_list_is_unknown_not_a_transient_error(cloud, monkeypatch):
    """ListAssets refuses a type it does not list (INVALID_ARGUMENT): the attributes of that scope are UNKNOWN and
    fail unless accepted; the rest of the review still runs (it is not exit 6, the service answered)."""
    monkeypatch.setattr(live, "DATA_TYPES", (*live.DATA_TYPES, "example.googleapis.com/NotListed"))
    rep = review_live(cloud)
    scope = f"projects/{cloud.project_id}"
    unknown = next(u for u in rep["live"]["unknowns"] if u["field"] == "listAssets")
    assert unknown["address"] == scope and "InvalidArgument" in unknown["why"]
    assert not rep["ok"] and scope in rep["unresolved"]
    assert f"{scope} (IAM policies)" in rep["live"]["scopes_read"]

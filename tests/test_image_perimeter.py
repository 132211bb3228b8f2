"""Images from outside a perimeter that restricts Artifact Registry (README, "Images and the perimeter"): nothing is
opened by default; `perimeter_image_projects` adds a DockerRead-only egress rule per registry project (the shape
Google documents for mirror.gcr.io), which the review names until a reviewer accepts it with a reason; Google's own
documented rule (mirror.gcr.io's project) is no finding; anything wider than DockerRead stays a path out."""
from __future__ import annotations

import copy
import json
import textwrap

import pytest

from review.plan import load
from review.report import load_accepts, review
from stacks.config import ConfigError, parse_settings
from stacks.facts import AR_DOCKER_READ, DOCUMENTED_IMAGE_EGRESS
from tests.conftest import run_main

PERIMETER = "google_access_context_manager_service_perimeter"
BASE = {"project_id": "acme-hfgate-img", "region": "us-central1", "prefix": "hfg-img",
        "access_policy_id": "123456789012"}
REGISTRY = "projects/271828182845"


def test_registry_projects_are_project_numbers_and_need_a_perimeter():
    s = parse_settings("img", BASE)
    assert s.perimeter_image_projects == ()                       # nothing opened by default
    s = parse_settings("img", {**BASE, "perimeter_image_projects": [REGISTRY, REGISTRY]})
    assert s.perimeter_image_projects == (REGISTRY,)
    for bad in ("deeplearning-platform-release", "projects/acme-dlc", "us-docker.pkg.dev/x/"):
        with pytest.raises(ConfigError) as err:
            parse_settings("img", {**BASE, "perimeter_image_projects": [bad]})
        assert "perimeter_image_projects" in str(err.value) and "projects/NUMBER" in str(err.value)
    no_policy = {k: v for k, v in BASE.items() if k != "access_policy_id"}
    with pytest.raises(ConfigError) as err:
        parse_settings("img", {**no_policy, "perimeter_image_projects": [REGISTRY]})
    assert "access_policy_id" in str(err.value)


@pytest.fixture(scope="module")
def image_plan(tmp_path_factory):
    """An environment with an enforced perimeter and one registry project outside it."""
    root = tmp_path_factory.mktemp("img")
    (root / "config").mkdir()
    (root / "config" / "img.toml").write_text(textwrap.dedent(f"""
        project_id = "acme-hfgate-img"
        region = "us-central1"
        prefix = "hfg-img"
        access_policy_id = "123456789012"
        perimeter_dry_run = false
        perimeter_ingress_identities = ["group:platform-admins@acme.example"]
        perimeter_image_projects = ["{REGISTRY}"]
        allow_models = ["google/txgemma-2b-predict"]
    """))
    out = root / "synth"
    proc = run_main({"CDKTF_OUTDIR": str(out), "HFGATE_CONFIG_DIR": str(root / "config"), "HFGATE_ENVS": "img"})
    assert proc.returncode == 0, proc.stderr
    return out / "stacks" / "hfgate-img" / "cdk.tf.json"


def _perimeter(data):
    return next(iter(data["resource"][PERIMETER].values()))


def _write(tmp_path, data):
    path = tmp_path / "s" / "cdk.tf.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return load(path)


def test_the_stack_adds_a_docker_read_only_rule_per_registry_project(image_plan):
    status = _perimeter(json.loads(image_plan.read_text()))["status"]
    assert "artifactregistry.googleapis.com" in status["restricted_services"]
    (policy,) = status["egress_policies"]
    assert policy["egress_from"] == {"identity_type": "ANY_IDENTITY"}
    assert policy["egress_to"]["resources"] == [REGISTRY]
    (op,) = policy["egress_to"]["operations"]
    assert op["service_name"] == "artifactregistry.googleapis.com"
    assert op["method_selectors"] == [{"method": AR_DOCKER_READ}]


def test_the_review_names_the_image_pull_until_accepted_with_a_reason(image_plan, tmp_path):
    rep = review(load(image_plan))
    pulls = [f for f in rep["egress"]["findings"] if "pull images" in f["what"]]
    assert pulls and REGISTRY in pulls[0]["what"] and not pulls[0]["accepted"]
    assert rep["egress"]["ok"] is False
    accept = tmp_path / "accept.toml"
    accept.write_text("".join(f'[[egress]]\naddress = "{f["address"]}"\nreason = "Google\'s Deep Learning Containers'
                              f' project, named by a dry-run violation"\n' for f in pulls))
    rep = review(load(image_plan), accepts=load_accepts(accept))
    assert all(f["accepted"] for f in rep["egress"]["findings"] if "pull images" in f["what"])


def test_googles_documented_rule_is_no_finding_and_a_wider_rule_is_a_path_out(image_plan, tmp_path):
    data = json.loads(image_plan.read_text())
    documented = copy.deepcopy(data)
    _perimeter(documented)["status"]["egress_policies"][0]["egress_to"]["resources"] = list(DOCUMENTED_IMAGE_EGRESS)
    rep = review(_write(tmp_path / "a", documented))
    assert not [f for f in rep["egress"]["findings"] if "egress policy" in f["what"]], rep["egress"]["findings"]
    assert rep["egress"]["ok"], rep["egress"]
    for widen in ("every method", "every project"):
        wide = copy.deepcopy(data)
        to = _perimeter(wide)["status"]["egress_policies"][0]["egress_to"]
        if widen == "every method":
            to["operations"][0]["method_selectors"].append({"method": "*"})
        else:
            to["resources"] = ["*"]
        rep = review(_write(tmp_path / widen.replace(" ", "-"), wide))
        paths = [f for f in rep["egress"]["findings"] if "a path out" in f["what"]]
        assert paths and "artifactregistry.googleapis.com" in paths[0]["what"], widen

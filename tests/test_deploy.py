"""The platform engineer's path, as far as this machine allows: `make diff` starts the pinned CLI, synthesizes what
`python main.py` synthesizes and reaches `terraform init` (which needs a provider registry this machine cannot
reach); missing or old Terraform stops every deploy target with exit 2 and how to install it; a first apply on a
bare project needs no second run; synthesis loads no second provider assembly."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.facts import api_for
from tests.conftest import ROOT


def _strip(data):
    """Synthesized JSON without cdktn's metadata blocks (they name the tool that ran)."""
    if isinstance(data, dict):
        return {k: _strip(v) for k, v in data.items() if k != "//"}
    if isinstance(data, list):
        return [_strip(v) for v in data]
    return data


def test_make_diff_runs_the_pinned_cli_synthesizes_like_main_and_reaches_terraform_init(synth_dir):
    proc = subprocess.run(["make", "diff", "ENV=dev"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert "node_modules/.bin/cdktn diff hfgate-dev" in out                     # the pinned CLI, not npx
    assert "terraform 1." in out or "tofu 1." in out                           # the toolchain check ran first
    synthesized = json.loads((ROOT / "cdktf.out" / "stacks" / "hfgate-dev" / "cdk.tf.json").read_text())
    by_main = json.loads((synth_dir / "stacks" / "hfgate-dev" / "cdk.tf.json").read_text())
    assert _strip(synthesized) == _strip(by_main)
    assert "Initializing provider plugins" in out
    if proc.returncode != 0:          # offline: init stops at the registry, and Terraform says which and why
        assert "registry.terraform.io" in out and "hashicorp/google" in out
    assert "checkpoint-api.hashicorp.com" not in out                             # no telemetry attempt


def _path_without_terraform(tmp_path: Path, fake_version: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "bash", "env", "mkdir", "grep", "sed", "dirname"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    if fake_version:
        script = bin_dir / "terraform"
        script.write_text(f"#!/bin/sh\necho '{{\"terraform_version\": \"{fake_version}\"}}'\n")
        script.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("fake_version,expected", [(None, "neither terraform nor tofu"),
                                                   ("1.5.7", "is 1.5.7; the stacks need >= 1.11")])
@pytest.mark.parametrize("target", ["diff", "deploy", "destroy", "output"])
def test_deploy_targets_stop_with_exit_2_without_terraform_1_11(tmp_path, target, fake_version, expected):
    before = {p: p.stat().st_mtime for p in (ROOT / "cdktf.out").rglob("cdk.tf.json")} \
        if (ROOT / "cdktf.out").exists() else {}
    env = {**os.environ, "PATH": _path_without_terraform(tmp_path, fake_version)}
    env.pop("TERRAFORM_BINARY_NAME", None)
    proc = subprocess.run(["make", target, "ENV=dev"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert expected in proc.stderr and "https://developer.hashicorp.com/terraform/install" in proc.stderr
    assert "TERRAFORM_BINARY_NAME=tofu" in proc.stderr
    after = {p: p.stat().st_mtime for p in (ROOT / "cdktf.out").rglob("cdk.tf.json")} \
        if (ROOT / "cdktf.out").exists() else {}
    assert after == before                                                       # nothing synthesized
    assert not (ROOT / "outputs" / "dev.json").exists() or target not in ("deploy", "output")


def test_the_cli_is_pinned_in_a_lockfile_without_download_addresses():
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert package["devDependencies"]["cdktn-cli"] == lock["packages"]["node_modules/cdktn-cli"]["version"] == "0.24.0"
    assert all(p.get("integrity") or p.get("inBundle") for k, p in lock["packages"].items() if k)   # hash-pinned
    makefile = (ROOT / "Makefile").read_text()
    assert "npx" not in makefile and "'ci'" in makefile


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_every_resource_of_an_enabled_api_waits_for_that_api(plans, env):
    """One apply on a bare project: each resource whose API the stack enables depends on that API's
    google_project_service (service identities on the API they name)."""
    data = plans[env]
    # With teams, each team's project enables its own APIs: a resource whose project is written out waits for the API
    # of that project; one whose project is a reference (to a resource of the same stack) waits for the API somewhere.
    services = {(v["project"], v["service"]): f"google_project_service.{k}"
                for k, v in data["resource"]["google_project_service"].items()}
    checked = 0
    for rtype, by_name in data["resource"].items():
        for name, values in by_name.items():
            api = values.get("service") if rtype == "google_project_service_identity" else api_for(rtype)
            enabling = {svc for (_, s), svc in services.items() if s == api}
            if rtype == "google_project_service" or not enabling:
                continue
            own = services.get((values.get("project"), api))
            waits = set(values.get("depends_on", []))
            assert (own in waits) if own else (enabling & waits), f"{rtype}.{name} does not wait for {api}"
            checked += 1
    assert checked > 15


def test_synthesis_loads_only_the_google_provider_assembly(tmp_path):
    code = ("import sys, os\nsys.path.insert(0, os.getcwd())\nfrom stacks.app import build_app\n"
            "app = build_app(['prod'])\napp.synth()\n"
            "print(sorted(m for m in sys.modules if m.startswith('cdktn_provider')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "CDKTF_OUTDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.strip().splitlines()[-1]
    assert "cdktn_provider_google_beta" not in loaded and "'cdktn_provider_google'" in loaded
    data = json.loads((tmp_path / "stacks" / "hfgate-prod" / "cdk.tf.json").read_text())
    assert data["terraform"]["required_providers"]["google-beta"]["source"] == "hashicorp/google-beta"
    assert data["terraform"]["required_providers"]["google-beta"]["version"] == \
        data["terraform"]["required_providers"]["google"]["version"]
    assert all(v["provider"] == "google-beta" for v in data["resource"]["google_project_service_identity"].values())

"""Bad configuration fails synth with the field, the fix and exit code 2, and writes nothing."""
from __future__ import annotations

import tomllib

import pytest

from stacks.config import CONFIG_DIR, load_settings
from tests.conftest import run_main

GOOD = tomllib.loads((CONFIG_DIR / "sandbox.toml").read_text())

CASES = [
    ("project_id", "My_Project", "not a valid project id"),
    ("project_id", None, "missing"),
    ("region", "mars-north1", "does not offer Vertex AI"),
    ("prefix", "Hfg", "2-15 lowercase"),
    ("egress_mode", "vpn", "not an egress mode"),
    ("labels", {"Team": "x"}, "label keys"),
    ("access_policy_id", "policy-1", "numeric access policy id"),
    ("kms_key", "my-key", "projects/P/locations"),
    ("secret_replica_locations", ["us central"], "not a location"),
    ("token_rotation_days", 0, "out of range"),
    ("machine_type", "g2-standard-7", "unknown machine type"),
    ("accelerator_type", "NVIDIA_TESLA_T4", "comes with NVIDIA_L4"),
    ("accelerator_count", 2, "exactly 1"),
    ("subnet_cidr", "8.8.8.0/24", "private IPv4"),
    ("proxy_only_cidr", "10.8.0.0/23", "overlaps"),
    ("colour", "blue", "unknown field"),
]


def write_config(tmp_path, field, value):
    raw = dict(GOOD)
    if value is None:
        raw.pop(field)
    else:
        raw[field] = value
    lines = []
    for k, v in raw.items():
        if isinstance(v, dict):
            lines.append(f"{k} = {{ " + ", ".join(f'{a} = "{b}"' for a, b in v.items()) + " }")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        elif isinstance(v, list):
            lines.append(f"{k} = [" + ", ".join(f'"{x}"' for x in v) + "]")
        else:
            lines.append(f"{k} = {v}")
    (tmp_path / "sandbox.toml").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("field,value,message", CASES, ids=[f"{c[0]}={c[1]}" for c in CASES])
def test_bad_config_fails_synth_with_the_fix(tmp_path, field, value, message):
    write_config(tmp_path, field, value)
    out = tmp_path / "cdktf.out"
    proc = run_main({"HFGATE_CONFIG_DIR": str(tmp_path), "HFGATE_ENVS": "sandbox", "CDKTF_OUTDIR": str(out)})
    assert proc.returncode == 2, proc.stderr
    assert field.split(".")[0] in proc.stderr and message in proc.stderr
    assert "nothing was written" in proc.stderr
    assert not out.exists()


def test_unknown_environment_names_the_known_ones(tmp_path):
    proc = run_main({"HFGATE_ENVS": "staging", "CDKTF_OUTDIR": str(tmp_path / "o")})
    assert proc.returncode == 2
    assert "no such environment 'staging'" in proc.stderr and "sandbox" in proc.stderr


def test_shipped_configs_load():
    assert load_settings("prod").egress_enforced is True
    assert load_settings("sandbox").egress_enforced is False

"""The outputs contract loader: the three accepted shapes, and clear errors for everything else."""
from __future__ import annotations

import json

import pytest

from stacks.config import load_settings
from stacks.contract import OutputsError, load_outputs, parse_outputs, outputs_from_settings


@pytest.fixture
def expected():
    return outputs_from_settings(load_settings("sandbox"), project_number="42")


def test_reads_cdktn_outputs_file(tmp_path, expected):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"hfgate-sandbox": json.loads(expected.to_json())}))
    assert load_outputs(path, env="sandbox") == expected


def test_reads_terraform_output_json(tmp_path, expected):
    flat = json.loads(expected.to_json())
    path = tmp_path / "o.json"
    path.write_text(json.dumps({k: {"value": v, "type": "x", "sensitive": False} for k, v in flat.items()}))
    assert load_outputs(path) == expected


def test_round_trips_its_own_json(tmp_path, expected):
    path = tmp_path / "o.json"
    path.write_text(expected.to_json())
    assert load_outputs(path, env="sandbox") == expected


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    ("{not json", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"a": 1}', "no hfgate outputs"),
])
def test_bad_outputs_files(tmp_path, content, message):
    path = tmp_path / "o.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(OutputsError) as err:
        load_outputs(path, env="sandbox")
    assert message in str(err.value) and "cdktn output" in str(err.value)
    assert err.value.exit_code == 2


def test_older_contract_version_is_refused(expected):
    data = json.loads(expected.to_json())
    data["contract_version"] = 0
    with pytest.raises(OutputsError, match="contract version 0"):
        parse_outputs(data)


def test_wrong_environment_is_refused(expected):
    with pytest.raises(OutputsError, match="is for env 'sandbox', not 'prod'"):
        parse_outputs(json.loads(expected.to_json()), env="prod")

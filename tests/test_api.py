"""The Python API, as a script uses it against the local cloud: the README's example runs as written, every
operation returns typed results, raises the typed errors, and prints nothing."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, set_token
from tests.test_submit import DATASET, GATED


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_script(cloud, code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env={**os.environ, **cloud.env()},
                          capture_output=True, text=True, timeout=180)


def test_the_readme_example_runs_as_written(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = run_script(cloud, readme_example())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert out[0].startswith(("submitted projects/", "already submitted projects/"))
    assert out[0].endswith("with token version " + out[0].rsplit(" ", 1)[-1]) and "/versions/" in out[0]
    assert "state: JOB_STATE_RUNNING" in out and out[-1] == "final: JOB_STATE_SUCCEEDED"
    assert proc.stderr == ""                                    # the library printed nothing of its own


API_SCRIPT = r"""
import json, sys
from jobs import api
import jobs
outputs = api.load_outputs("local")
model, dataset = sys.argv[1], sys.argv[2]
result = {}
report = api.check(outputs, model)
result["check"] = [report.ok, report.exit_code, [c.name for c in report.checks]]
dry = jobs.submit(outputs, jobs.TrainRequest(model=model, dataset=dataset, max_steps=1), dry_run=True)
result["dry"] = [dry.state, dry.job, dry.created, dry.request["custom_job"]["job_spec"]["service_account"],
                 dry.token_fingerprint, dry.preflight.ok]
try:
    api.submit(outputs, api.TrainRequest(model="hfgate-demo/does-not-exist", dataset=dataset))
except api.PreflightFailed as err:
    result["refused"] = [err.exit_code, bool(err.fix), err.report.ok]
try:
    api.submit(outputs, api.TrainRequest(model=model, dataset=dataset, extra_args=("--model_name_or_path", "x")))
except api.UsageError as err:
    result["usage"] = err.exit_code
sub = api.submit(outputs, api.TrainRequest(model=model, dataset=dataset, max_steps=1, nonce="api-test"))
final = api.wait(outputs, sub.job, poll_s=0.2)
result["wait"] = [final.state, final.labels["hfgate-request-id"] == sub.request_id]
result["logs"] = any(line.startswith("probe: HF_TOKEN sha256") for line in api.logs(outputs, sub.job))
again = api.submit(outputs, api.TrainRequest(model=model, dataset=dataset, max_steps=1, nonce="api-test"))
result["again"] = [again.created, again.job == sub.job]
try:
    api.cancel(outputs, sub.job)
except api.HfgateError as err:
    result["cancel_done"] = type(err).__name__
except Exception as err:
    result["cancel_done"] = "raw:" + type(err).__name__
try:
    api.status(outputs, "999999")
except api.NotFound as err:
    result["missing"] = err.exit_code
try:
    api.token_status(outputs)          # the submitter may read the token but not list versions
except api.AccessDenied as err:
    result["token"] = [err.exit_code, "secretVersionManager" in err.fix]
print(json.dumps(result))
"""


def test_every_operation_returns_typed_results_raises_typed_errors_and_prints_nothing_else(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    proc = run_script(cloud, API_SCRIPT, GATED, DATASET)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    import json
    r = json.loads(proc.stdout)
    assert r["check"][0] is True and r["check"][1] == 0 and "gated access" in r["check"][2]
    assert r["dry"][:3] == ["DRY_RUN", "", False] and r["dry"][3] == cloud.outputs.trainer_email and r["dry"][5]
    assert r["refused"] == [5, True, False]
    assert r["usage"] == 2
    assert r["wait"] == ["JOB_STATE_SUCCEEDED", True] and r["logs"] is True
    assert r["again"] == [False, True]
    assert r["missing"] == 5 and r["token"] == [4, True]


def test_api_has_no_workflow_left_in_the_cli():
    """The CLI renders; the workflow lives in jobs.api (and the review's in review.report)."""
    cli = (ROOT / "jobs" / "cli.py").read_text()
    for name in ("read_token", "preflight", "build_custom_job", "vertex.create", "require_mirror",
                 "resolve_commit", "hfjobs.run", "LogFollower", "run_checkov", "lifecycle.set_token"):
        assert not re.search(rf"(?<![\w]){re.escape(name)}\(", cli), name


@pytest.mark.parametrize("bad", [None, "no-such-env"])
def test_load_outputs_says_what_to_do(tmp_path, bad, monkeypatch):
    from jobs import api
    monkeypatch.delenv("HFGATE_OUTPUTS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(api.UsageError) as err:
        api.load_outputs(bad)
    assert err.value.exit_code == 2 and "make" in err.value.fix


def test_the_package_re_exports_exactly_the_api():
    import jobs
    from jobs import api
    assert jobs._API_NAMES == set(api.__all__)
    assert jobs.submit is api.submit and jobs.TrainRequest is api.TrainRequest


VERTEX_IMPORT_CHECK = """
import json, sys
from jobs import endpoints, vertex
from stacks.contract import load_outputs
first = sys.argv[1] == "sdk-first"
if first:
    from google.cloud import aiplatform_v1 as before
import os
outputs = load_outputs(os.environ["HFGATE_OUTPUTS"])
client = endpoints.vertex(outputs.region)
jobs = list(client.list_custom_jobs(parent=vertex._parent(outputs)))
services = sorted({m.split(".")[4] for m in sys.modules if m.startswith("google.cloud.aiplatform_v1.services.")})
# The rest of the package, used afterwards in the same process, is all there.
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1 import PipelineServiceClient
import google.cloud.aiplatform as sdk
whole = {"dir": "PipelineServiceClient" in dir(aiplatform_v1),
         "same_type": aiplatform_v1.CustomJob is endpoints.vertex_custom_job() is aiplatform_v1.types.CustomJob,
         "state": aiplatform_v1.types.JobState.JOB_STATE_RUNNING.name, "sdk": sdk.CustomJob.__name__,
         "untouched": (before is aiplatform_v1 and "__getattr__" not in vars(aiplatform_v1)) if first else None}
try:
    aiplatform_v1.NoSuchName
    whole["missing"] = "no error"
except AttributeError as exc:
    whole["missing"] = str(exc)
print(json.dumps({"services": services, "whole": whole}))
"""


@pytest.mark.parametrize("order", ["hfgate-first", "sdk-first"])
def test_vertex_calls_load_only_the_job_service_and_the_package_stays_whole(cloud, order):
    """The Vertex AI package's __init__ imports every service's client (about 2 s of CPU on each command): hfgate
    loads JobService alone, and anything else of the package used later in the same process is there as usual."""
    import json
    proc = run_script(cloud, VERTEX_IMPORT_CHECK, order)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    if order == "hfgate-first":
        assert out["services"] == ["job_service"]
    else:
        assert len(out["services"]) > 30 and out["whole"]["untouched"] is True
    assert out["whole"]["dir"] and out["whole"]["same_type"] and out["whole"]["sdk"] == "CustomJob"
    assert out["whole"]["state"] == "JOB_STATE_RUNNING"
    assert "has no attribute 'NoSuchName'" in out["whole"]["missing"]

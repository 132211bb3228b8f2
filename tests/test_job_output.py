"""What a job's user reads: its log without library noise they cannot act on, and `submit --wait` showing the job's
lines in the order they happened, the final state last."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, hfgate, set_token

GATED = "hfgate-demo/tiny-gated-lm"
DATASET = "hfgate-demo/tiny-chat"

# A `trl` on PATH that does, with the real libraries, what makes the noise in a real `trl sft` run: transformers'
# TrainingArguments given the deprecated gradient_checkpointing (as trl 1.16 does), and accelerate launch's check
# of the values it was given. Plus warnings nobody silences: its own FutureWarning and a UserWarning.
FAKE_TRL = """#!{python}
import json, logging, sys, warnings
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
print("argv " + json.dumps(sys.argv[1:]), flush=True)
from transformers import TrainingArguments
TrainingArguments(output_dir=sys.argv[sys.argv.index("--output_dir") + 1], gradient_checkpointing=True,
                  use_cpu=True, report_to="none")
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
given = [a for i, a in enumerate(sys.argv) if a.startswith("--") and a.split("=")[0] in (
    "--num_processes", "--num_machines", "--mixed_precision", "--dynamo_backend")]
launch = []
for flag in given:
    launch += [flag, sys.argv[sys.argv.index(flag) + 1]]
_validate_launch_command(launch_command_parser().parse_args([*launch, "train.py"]))
warnings.warn("the trainer's own future warning", FutureWarning)
warnings.warn("a user warning from the trainer", UserWarning)
"""


def bootstrap(tmp_path, *trainer, env=None):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "trl"
    fake.write_text(FAKE_TRL.format(python=sys.executable))
    fake.chmod(0o755)
    run_env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    run_env.update({"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "HF_TOKEN": "hf_x", **(env or {})})
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "bootstrap.py"), "--", *trainer], cwd=tmp_path,
                          env=run_env, capture_output=True, text=True, timeout=300)


def test_the_bootstrap_silences_only_the_library_noise_a_user_cannot_act_on(tmp_path):
    pytest.importorskip("accelerate", reason="needs the train extra (make test installs it)")
    proc = bootstrap(tmp_path, "trl", "sft", "--output_dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "gradient_checkpointing` is deprecated" not in log                    # transformers' FutureWarning
    assert "had defaults used instead" not in log                                # accelerate's list of defaults
    assert "the trainer's own future warning" in log and "a user warning from the trainer" in log
    argv = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("argv "))[5:])
    assert argv[-8:] == ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                         "--dynamo_backend", "no"]

    # A user's own launch value is kept (and not given twice); a user's PYTHONWARNINGS still wins.
    proc = bootstrap(tmp_path, "trl", "sft", "--output_dir", str(tmp_path / "out"), "--mixed_precision=fp16",
                     env={"PYTHONWARNINGS": "default::FutureWarning"})
    argv = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("argv "))[5:])
    assert "--mixed_precision=fp16" in argv and "--mixed_precision" not in argv
    assert "gradient_checkpointing` is deprecated" in proc.stderr


def test_wait_shows_the_jobs_lines_in_order_before_its_final_state(cloud):
    """A short job (often first seen when it has already ended): `submit --wait` prints its lines in the order
    they happened, then SUCCEEDED."""
    set_token(cloud, cloud.hub_tokens["alice-read"])
    for _ in range(2):
        proc = hfgate(cloud, "submit", "--model", GATED, "--dataset", DATASET, "--max-steps", "1", "--wait",
                      "--display-name", f"wait-order-{time.time_ns()}", "--", "--probe_lines", "5",
                      "--probe_seconds", "0.2", timeout=180)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.splitlines()
        job_lines = [i for i, line in enumerate(lines) if line.startswith("  | ")]
        final = [i for i, line in enumerate(lines) if line.endswith("] SUCCEEDED")]
        assert job_lines and final and max(job_lines) < final[0], proc.stderr
        probe = [lines[i][4:] for i in job_lines if lines[i].startswith("  | probe line")]
        assert probe == [f"probe line {i:06d}" for i in range(5)], proc.stderr

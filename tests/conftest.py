from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A canary in the synthesizing process's environment: it must never reach anything synthesized.
SYNTH_CANARY = "hf_" + "CanaryCanaryCanaryCanaryCanarySynth"[:34]


def run_main(env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Synthesize every environment once per test session (jsii loads the provider once)."""
    out = tmp_path_factory.mktemp("cdktf.out")
    proc = run_main({"CDKTF_OUTDIR": str(out), "HF_TOKEN": SYNTH_CANARY})
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def plans(synth_dir) -> dict[str, dict]:
    return {p.parent.name.removeprefix("hfgate-"): json.loads(p.read_text())
            for p in synth_dir.glob("stacks/*/cdk.tf.json")}

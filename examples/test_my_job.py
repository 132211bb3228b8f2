"""How a team tests its own job script against the local cloud (README: "Testing your own job scripts")."""
import json
import subprocess
import sys
from pathlib import Path

pytest_plugins = ["localcloud.pytest_plugin"]
SCRIPT = Path(__file__).with_name("my_job.py")


def test_my_job_reads_the_token_and_sees_the_gated_model(hfgate_env):
    proc = subprocess.run([sys.executable, str(SCRIPT), "hfgate-demo/tiny-gated-lm"], env=hfgate_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "hfgate-demo/tiny-gated-lm" and out["gated"] == "auto"


def test_a_misspelled_model_id_fails_the_script(hfgate_env):
    proc = subprocess.run([sys.executable, str(SCRIPT), "hfgate-demo/Tiny-Gated-LM"], env=hfgate_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "RepositoryNotFoundError" in proc.stderr

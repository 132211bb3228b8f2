"""The README's example of a team testing its own job script, run as the team would: pytest on examples/ with the
plugin, in a process of its own."""
import subprocess
import sys

from tests.conftest import ROOT


def test_the_documented_example_test_passes_with_the_plugin():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(ROOT / "examples"), str(ROOT / "examples" / "test_my_job.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout

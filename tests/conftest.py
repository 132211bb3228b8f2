from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Nothing the suite runs may leave loopback: every Python process it starts loads tests/netguard/sitecustomize.py,
# which records non-loopback DNS lookups and connections in one log; the session fails if the log is not empty.
NETGUARD_LOG = Path(os.environ.get("HFGATE_NETGUARD_LOG") or
                    Path(os.environ.get("TMPDIR", "/tmp")) / f"hfgate-netguard-{os.getpid()}.log")
os.environ["HFGATE_NETGUARD_LOG"] = str(NETGUARD_LOG)
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "netguard"),
                                            *filter(None, [os.environ.get("PYTHONPATH")])])
if "PYTEST_XDIST_WORKER" not in os.environ:  # xdist workers share the controller's log: only it starts one
    NETGUARD_LOG.unlink(missing_ok=True)
sys.path.insert(0, str(ROOT / "tests" / "netguard"))
import sitecustomize as _netguard  # noqa: E402,F401  (this process too)
sys.path.pop(0)


def netguard_lines() -> list[str]:
    return NETGUARD_LOG.read_text().splitlines() if NETGUARD_LOG.exists() else []


def pytest_sessionfinish(session, exitstatus):
    lines = netguard_lines()
    if lines:
        print("\nNETGUARD: something left loopback during the suite:\n  " + "\n  ".join(lines[:50]),
              file=sys.stderr)
        session.exitstatus = 1
# A canary in the synthesizing process's environment: it must never reach anything synthesized.
SYNTH_CANARY = "hf_" + "CanaryCanaryCanaryCanaryCanarySynth"[:34]


def run_main(env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Synthesize every environment once per test run (jsii loads the provider once): with xdist workers, the first
    one synthesizes under a file lock and the others read the same folder (tests only read it)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        out = tmp_path_factory.mktemp("cdktf.out")
        proc = run_main({"CDKTF_OUTDIR": str(out), "HF_TOKEN": SYNTH_CANARY})
        assert proc.returncode == 0, proc.stderr
        return out
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent
    out = shared / "cdktf.out"
    with FileLock(str(shared / "cdktf.out.lock")):
        if not (out / ".synthesized").exists():
            proc = run_main({"CDKTF_OUTDIR": str(out), "HF_TOKEN": SYNTH_CANARY})
            assert proc.returncode == 0, proc.stderr
            (out / ".synthesized").touch()
    return out


@pytest.fixture(scope="session")
def plans(synth_dir) -> dict[str, dict]:
    return {p.parent.name.removeprefix("hfgate-"): json.loads(p.read_text())
            for p in synth_dir.glob("stacks/*/cdk.tf.json")}


@pytest.fixture(scope="session")
def cloud(synth_dir):
    """The local cloud, once per session, created from the synthesized local stack; its jobs find the `trl`
    probe in tests/bin first on PATH (the end-to-end test runs the real trl in a cloud of its own)."""
    from localcloud import LocalCloud
    from review.plan import synthesized
    with LocalCloud(plan=synthesized(synth_dir, "local")) as c:
        c.jobs.path_prefix = [str(ROOT / "tests" / "bin")]
        # In-process clients (HfApi in a test) trust the local CA the standard way and reach the local Hub, as the
        # env file says. huggingface_hub reads HF_ENDPOINT once, at import (and fetches its agent registry from
        # that endpoint, whatever endpoint an HfApi is given): set both, or the process would call the real Hub.
        from huggingface_hub import constants
        hub_env = {**c.tls.trust_env(), "HF_ENDPOINT": c.hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
        saved = {k: os.environ.get(k) for k in hub_env}
        saved_endpoint = constants.ENDPOINT
        os.environ.update(hub_env)
        constants.ENDPOINT = c.hub.url
        yield c
        constants.ENDPOINT = saved_endpoint
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, synth_dir):
    """`make demo`'s program, run once per test run as it is (the real trl sft in a local Vertex job); the
    end-to-end checks and the egress replay read the evidence it keeps. With xdist workers, the first worker that
    needs it runs it under a file lock and the others read the same evidence (tests only read it)."""
    from review.plan import synthesized

    def run(evidence: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "localcloud.demo", "--evidence", str(evidence), "--plan",
                               str(synthesized(synth_dir, "local"))], cwd=ROOT, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "HF_TOKEN": ""})
    if "PYTEST_XDIST_WORKER" not in os.environ:
        evidence = tmp_path_factory.mktemp("evidence")
        return run(evidence), evidence
    from filelock import FileLock
    shared = tmp_path_factory.getbasetemp().parent
    evidence, result = shared / "demo-evidence", shared / "demo-result.json"
    with FileLock(str(shared / "demo.lock")):
        if not result.exists():
            evidence.mkdir(exist_ok=True)
            proc = run(evidence)
            result.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout,
                                          "stderr": proc.stderr}))
    r = json.loads(result.read_text())
    return subprocess.CompletedProcess(["localcloud.demo"], r["returncode"], r["stdout"], r["stderr"]), evidence


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A function returning a fresh copy of `localcloud.tinymodel.build_model()`'s files. The build is
    deterministic (same bytes each time) and costs ~9 s of CPU in the process that does it (torch, transformers, a
    tokenizer trained): it runs once per test run, and the workers read the same files under a file lock."""
    from filelock import FileLock

    from localcloud.tinymodel import build_model
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:     # the workers' base folders share a parent
        shared = shared.parent
    folder = shared / "tiny-model"
    with FileLock(str(shared / "tiny-model.lock")):
        if not (folder / ".built").exists():
            for rel, data in build_model().items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(data)
            (folder / ".built").touch()
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".built"}
    return lambda: dict(files)


def hfgate(cloud, *args, as_member=None, extra_env=None, timeout=120):
    env = {**os.environ, **cloud.env(as_member=as_member), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def set_token(cloud, value: str) -> str:
    """Add a secret version as the platform admin, through the official client (what `token set` will do), in this
    process: a fixture step, not the thing under test (`hfgate token set` is tested as a command in
    test_lifecycle.py)."""
    import google_crc32c
    from google.cloud.secretmanager_v1 import types as sm

    from jobs import endpoints
    data = value.encode()
    with cloud.environ(as_member=cloud.admin):
        client = endpoints.secret_manager()
        try:
            version = client.add_secret_version(parent=cloud.outputs.token_secret, payload=sm.SecretPayload(
                data=data, data_crc32c=google_crc32c.value(data)))
        finally:
            client.transport.close()
    return version.name

"""A newcomer's own session on the local cloud, exactly as the README prints it, from a folder outside the
repository: start the local cloud, store a token as its admin, check, submit with the defaults (LoRA) and the real
`trl`, status, logs (from another folder), publish, the "From Python" example; then what hfgate says once the cloud
has stopped. Also the README's plugin snippet as printed, the errors that must point the right way, and the README's
figures that used to drift."""
from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT, hfgate, set_token

README = (ROOT / "README.md").read_text()
MODEL, DATASET = "hfgate-demo/tiny-gated-lm", "hfgate-demo/tiny-chat"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


def section(heading: str) -> str:
    text = README[README.index(heading):]
    end = text.find("\n## ", len(heading))
    return text if end < 0 else text[:end]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def commands(block: str) -> list[str]:
    """The commands of a shell block as a user types them: comments and blank lines left out."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and
            not line.lstrip().startswith("#")]


def activated_env(synth_dir: Path) -> dict[str, str]:
    """This process's environment as a shell where `source .venv/bin/activate` ran: the venv first on PATH, none of
    the local cloud's settings, no proxy of our own; the plan already synthesized (CDKTF_OUTDIR), as `make demo`
    leaves it."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith("HFGATE_")
           or k == "HFGATE_NETGUARD_LOG"}
    venv = Path(sys.executable).parent
    env.update(PATH=f"{venv}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv.parent),
               CDKTF_OUTDIR=str(synth_dir), HF_TOKEN="")
    assert "tests/bin" not in env["PATH"]          # the suite's trl probe is nowhere: the real trl runs
    return env


class Terminal:
    """A second terminal: each command runs in bash after the README's `source` line, from `cwd`."""

    def __init__(self, cwd: Path, env: dict[str, str], source_line: str):
        self.cwd, self.env, self.source_line = cwd, env, source_line

    def run(self, command: str, timeout: int = 180, cd: Path | None = None) -> subprocess.CompletedProcess:
        script = f"{self.source_line} && " + (f"cd {cd} && " if cd else "") + command
        return subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def start_up(cwd: Path, env: dict[str, str], command: str) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.time() + 240
    while not any("endpoints written to" in line for line in lines):
        assert proc.poll() is None and time.time() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    return proc, lines


def test_a_newcomer_follows_the_readme_from_a_folder_outside_the_repository(synth_dir, tmp_path):
    pytest.importorskip("trl", reason="the newcomer's session trains with the real trl (the train extra)")
    pytest.importorskip("peft", reason="LoRA, submit's default, needs peft (the train extra)")
    own = section("## Your own session on the local cloud")
    assert "source .venv/bin/activate" in own
    up_block, session_block = code_blocks(own, "shell")
    (up_command,) = commands(up_block)
    source_line, *steps = commands(session_block)
    assert source_line == "source .localcloud/localcloud.env"
    folder = tmp_path / "my-session"
    folder.mkdir()
    assert ROOT not in folder.parents
    env = activated_env(synth_dir)
    up, up_lines = start_up(folder, env, up_command)
    try:
        state = folder / ".localcloud"
        term = Terminal(folder, env, source_line)

        # The env file: absolute paths, no shell-wide proxy, real sites still trusted.
        shell = term.run("env")
        sourced = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
        assert not set(PROXY_VARIABLES) & set(sourced), "sourcing the env file set a shell-wide proxy"
        assert sourced["HFGATE_HTTPS_PROXY"].startswith("http://127.0.0.1:")
        for name in ("HFGATE_OUTPUTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CLOUDSDK_CONFIG"):
            assert Path(sourced[name]).is_absolute() and Path(sourced[name]).exists(), name
        import certifi
        trust = Path(sourced["SSL_CERT_FILE"]).read_bytes()
        assert Path(certifi.where()).read_bytes().strip() in trust and (state / "tls" / "ca.pem").read_bytes() in trust

        # Before any token: the admin's token status says how to add one, here.
        admin = Terminal(folder, env, "source .localcloud/localcloud-admin.env").run("hfgate token status")
        assert admin.returncode == 0, admin.stderr
        assert "no versions yet: add one as a platform admin: hfgate token set --env local" in admin.stdout
        assert "python -m localcloud token-set" in admin.stdout

        results: dict[str, subprocess.CompletedProcess] = {}
        job = ""
        for step in steps:
            command = step.replace("JOB", job) if job else step
            name = " ".join(command.split()[:3])
            # logs runs from another folder: the env file's paths are absolute
            elsewhere = tmp_path if command.startswith("hfgate logs") else None
            proc = term.run(command, timeout=600 if " --wait" in command else 180, cd=elsewhere)
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            results[name] = proc
            if command.startswith("hfgate submit"):
                job = proc.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
                assert job.isdigit(), proc.stdout[-2000:]
        assert job and "JOB" not in " ".join(r.args[-1] for r in results.values())
        said = {name: r.stdout + r.stderr for name, r in results.items()}
        submit = next(text for name, text in said.items() if name.startswith("hfgate submit"))
        assert "ready to train" in submit and "SUCCEEDED" in submit
        assert "Training completed" in submit and "probe:" not in submit    # the real trl, not the suite's probe
        assert "stored projects/" in said["python -m localcloud"]
        assert "SUCCEEDED" in said[f"hfgate status {job}"]
        assert "Training completed" in said[f"hfgate logs {job}"]
        assert "acme/my-first-sft@" in said[f"hfgate publish {job}"]
        # submit's defaults trained a LoRA adapter: that is what the run holds and publish sent
        assert "adapter_model.safetensors" in said[f"hfgate publish {job}"]
        assert "model.safetensors (" not in said[f"hfgate publish {job}"].replace("adapter_model.safetensors", "")

        # The submitter may not add a version; on the local cloud the refusal names the admin's command.
        refused = term.run("python -c \"import json; print(json.load(open('.localcloud/hub-tokens.json'))"
                           "['alice-read'], end='')\" | hfgate token set")
        assert refused.returncode == 4 and "python -m localcloud token-set" in refused.stderr, refused.stderr

        # The "From Python" example, as printed, in the same shell: it finds the same request's job.
        (folder / "example.py").write_text(code_blocks(section("## From Python"), "python")[0])
        example = term.run("python example.py", timeout=300)
        assert example.returncode == 0, example.stderr[-3000:]
        out = example.stdout.splitlines()
        assert out[0].startswith("already submitted projects/") and f"/customJobs/{job} " in out[0]
        assert out[-1] == "final: JOB_STATE_SUCCEEDED"
    finally:
        up.send_signal(signal.SIGINT)                        # Ctrl-C
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    assert "local cloud stopped" in "".join(up_lines)

    # The cloud stopped, the shell still has its env file: hfgate says to start it and source the file again.
    stale = term.run(f"hfgate check --model {MODEL}")
    assert stale.returncode == 2, stale.stderr
    assert "python -m localcloud up" in stale.stderr and "localcloud.env" in stale.stderr
    assert "gcloud auth" not in stale.stderr
    (state / "outputs.json").unlink()
    missing = term.run(f"hfgate status {job}")
    assert missing.returncode == 2 and "python -m localcloud up" in missing.stderr, missing.stderr
    assert "make deploy" not in missing.stderr
    (state / "outputs.json").write_text("{not json")
    corrupt = term.run(f"hfgate status {job}")
    assert corrupt.returncode == 2 and "python -m localcloud up" in corrupt.stderr, corrupt.stderr


def test_the_plugin_snippet_runs_as_printed(synth_dir, tmp_path):
    text = README[README.index("**Testing your own job scripts.**"):]
    snippet = code_blocks(text, "python")[0]
    (tmp_path / "test_snippet.py").write_text(snippet)
    (tmp_path / "my_job.py").write_text((ROOT / "examples" / "my_job.py").read_text())
    env = activated_env(synth_dir)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_snippet.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


# --- errors that point the right way ------------------------------------------------------------------------------
def test_cancelling_a_finished_job_is_a_usage_error_and_token_status_reads(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    sub = hfgate(cloud, "submit", "--model", MODEL, "--dataset", DATASET, "--max-steps", "1", "--wait",
                 "--force-new", "--no-lora", timeout=300)
    assert sub.returncode == 0, sub.stderr[-2000:]
    job = sub.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    cancel = hfgate(cloud, "cancel", job)
    assert cancel.returncode == 2, cancel.stderr
    assert "has already ended (SUCCEEDED)" in cancel.stderr and "internal error" not in cancel.stderr
    status = hfgate(cloud, "token", "status", as_member=cloud.admin)
    assert status.returncode == 0, status.stderr
    versions = [line for line in status.stdout.splitlines() if re.match(r"\s+v\d+ ", line)]
    assert versions and all(not re.search(r"\d(latest|jobs:)", line) for line in versions), versions
    assert any(re.search(r"\+00:00 +latest", line) for line in versions), versions


def test_a_closed_pipe_stops_hfgate_quietly():
    """`hfgate machines | head`: the reader goes away; no BrokenPipeError, exit 141 as Unix tools."""
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", "machines"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()                    # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "internal error" not in err


def test_no_versions_yet_names_the_team_and_the_local_admins_command(monkeypatch):
    from jobs.secret import set_token_fix
    from stacks.config import load_settings
    from stacks.contract import outputs_from_settings
    settings = load_settings("local-teams")
    team = settings.teams[0].name
    outputs = outputs_from_settings(settings, "100000000001", team)
    monkeypatch.delenv("HFGATE_LOCALCLOUD_STATE", raising=False)
    assert f"hfgate token set --env local-teams --team {team}" in set_token_fix(outputs)
    assert "localcloud" not in set_token_fix(outputs)
    monkeypatch.setenv("HFGATE_LOCALCLOUD_STATE", "/somewhere/.localcloud")
    fix = set_token_fix(outputs, " --kind write")
    assert f"--kind write --env local-teams --team {team}" in fix
    assert "python -m localcloud token-set" in fix and fix.endswith(f"--team {team}")


def test_seeded_models_are_real_tiny_llamas():
    """What seed.toml's safetensors repos hold: a header and tensors that match the config (the newcomer's session
    trains one with the real trl)."""
    import json

    from safetensors.numpy import load
    from tokenizers import Tokenizer

    from localcloud.cloud import _seed_files
    files = _seed_files("safetensors", "hfgate-demo/tiny-open-lm")
    config = json.loads(files["config.json"])
    tensors = load(files["model.safetensors"])
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert tensors["model.embed_tokens.weight"].shape == (config["vocab_size"], config["hidden_size"])
    assert len({k.split(".")[2] for k in tensors if k.startswith("model.layers.")}) == config["num_hidden_layers"]
    assert Tokenizer.from_str(files["tokenizer.json"].decode()).get_vocab_size() == config["vocab_size"]
    assert files == _seed_files("safetensors", "hfgate-demo/tiny-open-lm")     # deterministic


# --- the README's figures ------------------------------------------------------------------------------------------
def test_the_readme_figures_match_the_code():
    lines = len((ROOT / "jobs" / "bootstrap.py").read_text().splitlines())
    stated = int(re.search(r"the bootstrap \(standard library only, about (\d+) lines\)", README).group(1))
    assert abs(stated - lines) <= 0.1 * lines, (stated, lines)

    from tests.test_bad_input import CASES
    assert int(re.search(r"(\d+) bad inputs \(exit code", README).group(1)) == len(CASES)

    # The suite's time: one figure, stated the same way wherever it is stated.
    minutes = {int(m) for m in re.findall(r"about (\d+) minutes of pytest", README)}
    measured = int(re.search(r"about \d+ minutes of pytest on this 2-core\s+machine: (\d+) s", README).group(1))
    assert minutes == {round(measured / 60)}, (minutes, measured)
    assert not re.search(r"make test +#[^\n]*(\d+ minutes from a fresh clone)", README)


def test_make_help_lists_every_target_the_readme_names():
    named = set(re.findall(r"`make ([a-z][a-z-]*)", README)) | set(re.findall(r"^make ([a-z][a-z-]*) ", README, re.M))
    proc = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    listed = {line.split("\t")[0] for line in proc.stdout.splitlines()}
    assert "demo-teams" in listed and named <= listed, named - listed


def test_the_local_image_table_matches_the_train_extra_and_what_is_installed():
    own = section("## Your own session on the local cloud")
    rows = re.findall(r"^\| ([A-Za-z_]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", own, re.M)
    packages = {name: local.strip().split()[0] for name, _, local, _ in rows if name not in ("package", "Python")}
    assert {"torch", "transformers", "trl", "peft", "datasets", "accelerate"} <= set(packages)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = {re.split(r"[=<>]", r)[0].lower() for r in pyproject["project"]["optional-dependencies"]["train"]}
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    for name, version in packages.items():
        if name != "huggingface_hub":
            assert name in extra, f"{name} is in the image but not in the train extra"
        assert pins[name.replace("_", "-") if name.replace("_", "-") in pins else name] == version, name
        assert importlib.metadata.version(name).split("+")[0] == version, name


def test_without_the_train_extra_seeded_repos_are_valid_but_empty(monkeypatch, capsys):
    """A team using the pytest plugin with hfgate's core install only (no tokenizers, numpy): the local cloud still
    starts; its safetensors repos hold a valid file with no tensors and say why, instead of failing to start."""
    from safetensors import deserialize

    from localcloud.cloud import _seed_files
    from localcloud.tinymodel import seed_model
    seed_model.cache_clear()
    monkeypatch.setitem(sys.modules, "tokenizers", None)           # as if not installed: importing it fails
    try:
        files = _seed_files("safetensors", "hfgate-demo/tiny-open-lm")
    finally:
        monkeypatch.undo()
        seed_model.cache_clear()
    assert deserialize(files["model.safetensors"]) == [] and b"without the train extra" in files["README.md"]
    assert "install hfgate[train]" in capsys.readouterr().err

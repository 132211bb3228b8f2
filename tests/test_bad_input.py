"""Bad input, one table: every case gets its documented exit code, a message that names the fix, and creates
nothing (no secret version, no job, no synthesized file). Runs the real CLI against the local cloud."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.conftest import ROOT, hfgate, set_token
from tests.test_submit import DATASET, GATED

DEV = (ROOT / "config" / "sandbox.toml").read_text()


@dataclass
class Case:
    id: str
    code: int
    fix: str                                  # a regex the message must match (the fix it names)
    setup: Callable | None = None             # (cloud, tmp_path) -> dict of overrides: args/as_member/env
    args: list[str] = field(default_factory=list)
    kind: str = "submit"                      # submit | check | synth


# --- config: `main.py` (synth) refuses and writes nothing --------------------------------------------------------
def config_case(id, pattern, repl, fix):
    return Case(id, 2, fix, kind="synth", setup=lambda c, t: {"config": re.sub(pattern, repl, DEV, flags=re.M)})


CONFIG = [
    config_case("config: bad project id", r"^project_id = .*$", 'project_id = "Bad_Project"', r"project_id.*6-30"),
    config_case("config: unsupported region", r'^region = .*$', 'region = "mars-north1"', r"region.*(pick|one of)"),
    config_case("config: unknown machine", r'^machine_type = .*$', 'machine_type = "g9-huge-1"', r"machine_type"),
    config_case("config: accelerator not for machine", r'^accelerator_type = .*$',
                'accelerator_type = "NVIDIA_H100_80GB"', r"accelerator"),
    config_case("config: wrong accelerator count", r'^accelerator_count = .*$', 'accelerator_count = 3',
                r"accelerator_count|count"),
]


# --- outputs contract --------------------------------------------------------------------------------------------
def outputs_case(id, content, fix, extra=()):
    def setup(cloud, tmp):
        path = tmp / "outputs.json"
        if content is not None:
            path.write_text(content(cloud) if callable(content) else content)
        return {"args": ["--outputs", str(path), *extra]}
    return Case(id, 2, fix, setup=setup, kind="check", args=["--model", GATED])


def _old(cloud):
    data = json.loads(cloud.outputs.to_json())
    data["contract_version"] = 0
    return json.dumps(data)


OUTPUTS = [
    outputs_case("outputs: missing file", None, r"cdktn output"),
    outputs_case("outputs: corrupt JSON", "{not json", r"cdktn output|regenerate|produce"),
    outputs_case("outputs: older contract version", _old, r"version"),
    outputs_case("outputs: wrong environment", lambda c: c.outputs.to_json(), r"env", extra=("--env", "prod")),
]


# --- secret ------------------------------------------------------------------------------------------------------
def secret_case(id, state, code, fix, as_member=None):
    def setup(cloud, tmp):
        from google.cloud.secretmanager_v1 import types as sm
        sid = f"hfg-local-{re.sub('[^a-z]', '', id.split(':')[1])}"
        store = cloud.secrets
        if state != "missing" and sid not in store.secrets:
            store.create_secret(cloud.admin, f"projects/{cloud.project_id}", sid, sm.Secret(
                replication=sm.Replication(automatic=sm.Replication.Automatic())))
            cloud.grants.add(cloud.submitter, "roles/secretmanager.secretAccessor", f"secret:{sid}")
            if state in ("disabled", "destroyed"):
                v = store.add_version(cloud.admin, store.secret_name(sid),
                                      sm.SecretPayload(data=cloud.hub_tokens["alice-read"].encode()))
                store.set_state(cloud.admin, v.name, sm.SecretVersion.State.DISABLED if state == "disabled" else
                                sm.SecretVersion.State.DESTROYED, "secretmanager.versions.disable")
        data = json.loads(cloud.outputs.to_json())
        data["token_secret"] = f"projects/{cloud.project_id}/secrets/{sid}"
        if state == "denied":
            data["token_secret"] = cloud.outputs.token_secret
        (tmp / "outputs.json").write_text(json.dumps(data))
        return {"args": ["--outputs", str(tmp / "outputs.json")], "as_member": as_member and as_member(cloud)}
    return Case(id, code, fix, setup=setup, args=["--model", GATED, "--dataset", DATASET])


SECRET = [
    secret_case("secret: missing", "missing", 5, r"make deploy|deploy the stacks", as_member=lambda c: c.admin),
    secret_case("secret: no versions", "empty", 5, r"hfgate token set"),
    secret_case("secret: all disabled", "disabled", 5, r"token set|enable"),
    secret_case("secret: destroyed", "destroyed", 5, r"token set"),
    secret_case("secret: permission denied", "denied", 4, r"secretAccessor on the secret",
                as_member=lambda c: "serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com"),
]


# --- token ---------------------------------------------------------------------------------------------------------
def token_case(id, make, code, fix, args=("--model", GATED), kind="check"):
    def setup(cloud, tmp):
        set_token(cloud, make(cloud))
        return {}
    return Case(id, code, fix, setup=setup, args=list(args), kind=kind)


TOKEN = [
    token_case("token: empty", lambda c: "", 3, r"token set"),
    token_case("token: whitespace", lambda c: "  \t ", 3, r"token set|whitespace"),
    token_case("token: quoted", lambda c: f"'{c.hub_tokens['alice-read']}'", 3, r"quote"),
    token_case("token: $HF_TOKEN placeholder", lambda c: "$HF_TOKEN", 3, r"value|placeholder"),
    token_case("token: ${HF_TOKEN} placeholder", lambda c: "${HF_TOKEN}", 3, r"value|placeholder"),
    token_case("token: Bearer prefix", lambda c: "Bearer " + c.hub_tokens["alice-read"], 3, r"Bearer"),
    token_case("token: not hf_", lambda c: "sk-" + "a" * 40, 3, r"hf_"),
    token_case("token: revoked", lambda c: c.hub_tokens["alice-revoked"], 3, r"settings/tokens"),
    # A trailing newline (echo | gcloud) is stripped with a warning: the check passes.
    token_case("token: trailing newline", lambda c: c.hub_tokens["alice-read"] + "\n", 0, r"newline"),
]


# --- Hub -----------------------------------------------------------------------------------------------------------
def hub_case(id, token, code, fix, model=GATED, revision=None, fault=None, env=None):
    def setup(cloud, tmp):
        set_token(cloud, cloud.hub_tokens[token])
        if fault:
            cloud.hub_state.set_fault(*fault[:1], **fault[1])
        extra = dict(env(cloud) if callable(env) else env or {})
        return {"env": extra, "args": ["--revision", revision] if revision else []}
    return Case(id, code, fix, setup=setup, args=["--model", model, "--dataset", DATASET])


HUB = [
    hub_case("hub: never accepted the terms", "bob-read", 4, r"accept the terms"),
    hub_case("hub: approval pending", "carol-read", 4, r"wait for approval", model="hfgate-demo/tiny-manual-lm"),
    hub_case("hub: request rejected", "dave-read", 4, r"another account|authors", model="hfgate-demo/tiny-manual-lm"),
    hub_case("hub: fine-grained without gated read", "alice-fg-nogated", 4, r"public gated repos"),
    hub_case("hub: fine-grained out of scope", "alice-fg-nogated", 4, r"namespace acme", model="acme/private-lm"),
    hub_case("hub: private repo", "bob-read", 5, r"private|spelling", model="acme/private-lm"),
    hub_case("hub: wrong-case id", "alice-read", 5, r"did you mean hfgate-demo/tiny-gated-lm",
             model="hfgate-demo/Tiny-Gated-LM"),
    hub_case("hub: missing revision", "alice-read", 5, r"existing branch", revision="v9"),
    hub_case("hub: 429 storm", "alice-read", 6, r"try again", fault=("/api/", {"rate_limit": 1000})),
    hub_case("hub: 503 storm", "alice-read", 6, r"try again", fault=("/api/", {"fail_503": 1000})),
    hub_case("hub: connection refused", "alice-read", 6, r"network path",
             env={"HF_ENDPOINT": "http://127.0.0.1:9"}),
    hub_case("hub: timeout", "alice-read", 6, r"network path", fault=("/api/", {"latency_s": 3.0}),
             env={"HFGATE_HUB_TIMEOUT": "0.5"}),
]


# --- Vertex --------------------------------------------------------------------------------------------------------
def vertex_case(id, code, fix, setup_fn, args=()):
    def setup(cloud, tmp):
        set_token(cloud, cloud.hub_tokens["alice-read"])
        return setup_fn(cloud) or {}
    return Case(id, code, fix, setup=setup, args=["--model", GATED, "--dataset", DATASET, "--force-new", *args])


def _no_act_as(cloud):
    cloud._saved = {t for t in cloud.grants.triples if t[1] == "roles/iam.serviceAccountUser"}
    cloud.grants.triples -= cloud._saved


def _quota(cloud):
    cloud.jobs.quota_exhausted = True


VERTEX = [
    vertex_case("vertex: act-as denied", 4, r"serviceAccountUser on hfg-local-trainer", _no_act_as),
    vertex_case("vertex: quota exhausted", 1, r"quota|FLEX_START", _quota,
                args=("--machine-type", "g2-standard-8", "--accelerator", "NVIDIA_L4", "--accelerator-count", "1")),
    vertex_case("display name over 128 characters (refused before Vertex)", 2, r"--dry-run|option",
                lambda c: None, args=("--display-name", "x" * 200)),
    vertex_case("vertex: accelerator count wrong for machine", 2, r"machine table|hfgate machines", lambda c: None,
                args=("--machine-type", "g2-standard-8", "--accelerator", "NVIDIA_L4", "--accelerator-count", "3")),
]

CASES = CONFIG + OUTPUTS + SECRET + TOKEN + HUB + VERTEX


def test_the_table_has_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(cloud, tmp_path, case: Case):
    if case.kind == "synth":
        cfg = tmp_path / "config"
        cfg.mkdir()
        (cfg / "sandbox.toml").write_text(case.setup(cloud, tmp_path)["config"])
        out = tmp_path / "out"
        proc = subprocess.run([sys.executable, str(ROOT / "main.py")], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "HFGATE_CONFIG_DIR": str(cfg), "HFGATE_ENVS": "sandbox",
                                   "CDKTF_OUTDIR": str(out)}, timeout=120)
        assert proc.returncode == case.code, proc.stderr
        assert re.search(case.fix, proc.stderr, re.I), proc.stderr
        assert "fix:" in proc.stderr and not out.exists()
        return
    over = case.setup(cloud, tmp_path) if case.setup else {}
    versions = len(cloud.secrets.secrets[cloud.names.secret_id].versions)
    jobs = len(cloud.jobs.jobs)
    try:
        proc = hfgate(cloud, case.kind, *case.args, *over.get("args", []), as_member=over.get("as_member"),
                      extra_env=over.get("env"), timeout=180)
    finally:
        cloud.hub_state.clear_faults()
        cloud.jobs.quota_exhausted = False
        if hasattr(cloud, "_saved"):
            cloud.grants.triples |= cloud._saved
            del cloud._saved
    text = proc.stdout + proc.stderr
    assert proc.returncode == case.code, text[-2000:]
    assert re.search(case.fix, text, re.I), text[-2000:]
    if case.code:
        assert "fix" in text
    assert len(cloud.jobs.jobs) == jobs, "a job was created"
    assert len(cloud.secrets.secrets[cloud.names.secret_id].versions) == versions, "a secret version was added"


def test_every_help_example_parses_and_names_a_team_where_the_environment_has_teams():
    """`hfgate --help` teaches by example: each complete example line is a valid command line, and an example for an
    environment with teams (dev) says which team, as the command would otherwise stop with exit 2."""
    import shlex

    from jobs.cli import EXAMPLES, _parser
    from stacks.config import load_settings
    checked = 0
    for line in EXAMPLES.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("hfgate ") or "..." in line or "|" in line:
            continue
        argv = shlex.split(line.split("<", 1)[0])[1:]
        args = _parser().parse_args(argv)                                  # exits 2 on a bad example
        env = getattr(args, "env", None)
        if env and load_settings(env).teams:
            assert getattr(args, "team", None), f"{line!r}: {env} has teams, the example names none"
        checked += 1
    assert checked >= 6

"""Egress scoped to an allowlist, proven on recorded traffic with a real CEL engine (cel-python).

The requests come from the local Hub's log: the real `trl sft` inside the demo's Vertex job (the job's own
window), `hf download` of the listed model and dataset, an upload with `HfApi.upload_file`, and a download of a model
that is not listed, all with Xet on as the clients have it by default (the Hub's token route, the Xet CAS and transfer
hosts: localcloud/xet.py). Each is replayed, in priority order, through the rules synthesized for an environment
whose allowlist names the demo's model and dataset. Requests the clients send that a download does not need
(stacks/hub_protocol.NOT_NEEDED: hf-xet's telemetry, the CLI's agent registry, datasets' dataset-viewer call) are
expected denied."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_main

pytest.importorskip("trl", reason="the replay records the real trainer (make test installs the train extra)")

MODEL, DATASET = "hfgate-demo/tiny-gated-lm", "hfgate-demo/tiny-chat"     # what the demo's job trains on
# What `hf download` fetches from the shared test cloud: repos of their own (the seeded ones stay untouched).
CLI_MODEL, CLI_DATASET = "hfgate-replay/gated-lm", "hfgate-replay/chat"
UNLISTED = "hfgate-replay/unlisted-lm"
CLI_STARTUP_CALLS = {"/api/agent-harnesses"}


OUTSIDE = "203.0.113.7"     # an address in no range of the plan (TEST-NET-3): "anything else"


def jobs_address(plan) -> str:
    """An address of the jobs' source range (the proxy rules are scoped to it), from the review's egress model."""
    import ipaddress
    from review.egress_model import build
    ranges = {s["name"]: s["range"] for s in build(plan).sources}
    return str(next(ipaddress.ip_network(ranges["jobs"].split(",")[0].strip()).hosts()))


def sent_from(address: str, requests: list) -> list:
    import dataclasses
    return [dataclasses.replace(r, source_ip=address) for r in requests]


def not_needed(entry: dict):
    """The NOT_NEEDED row of the protocol table a logged request is, or None."""
    from stacks import hub_protocol as hp
    return next((s for s in hp.NOT_NEEDED if entry["method"] in s.methods and entry["wire_path"] == s.path
                 and entry["host"] in hp.hosts(s.role)), None)


@pytest.fixture(scope="module")
def scoped_plan(tmp_path_factory):
    """An environment like dev (proxy mode) whose allowlist names the demo's model and dataset."""
    config = tmp_path_factory.mktemp("config")
    (config / "replay.toml").write_text(textwrap.dedent(f"""
        project_id = "acme-hfgate-replay"
        region = "us-central1"
        prefix = "hfg-rp"
        egress_mode = "proxy"
        allow_models = ["{MODEL}", "{CLI_MODEL}"]
        allow_datasets = ["{DATASET}", "{CLI_DATASET}"]
    """))
    out = tmp_path_factory.mktemp("synth")
    proc = run_main({"CDKTF_OUTDIR": str(out), "HFGATE_CONFIG_DIR": str(config), "HFGATE_ENVS": "replay"})
    assert proc.returncode == 0, proc.stderr
    from review.plan import load
    return load(out / "stacks" / "hfgate-replay" / "cdk.tf.json")


@pytest.fixture(scope="module")
def trainer_traffic(demo_run):
    """What the real trainer asked the Hub for, inside the demo's job (its RUNNING window)."""
    proc, evidence = demo_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    job = next(iter(json.loads((evidence / "jobs.json").read_text()).values()))
    start, end = (dt.datetime.fromisoformat(job[k].replace("Z", "+00:00")).timestamp() for k in ("startTime", "endTime"))
    log = json.loads((evidence / "hub-requests.json").read_text())
    inside = [e for e in log if start <= e["t"] <= end]
    assert any("/resolve/" in e["wire_path"] for e in inside), "the job's window holds the trainer's downloads"
    return inside


def _recorded(cloud, code: str, *args: str, tmp_path: Path, xet: bool = True
              ) -> tuple[subprocess.CompletedProcess, list[dict]]:
    before = len(cloud.hub_state.log)
    env = {**os.environ, **cloud.env(), "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": cloud.hub_tokens["alice-read"]}
    env.pop("HF_HUB_DISABLE_XET", None)      # the clients' default: Xet-backed files through hf-xet
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    proc = subprocess.run([sys.executable, "-c", code, *args] if code else list(args), cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc, list(cloud.hub_state.log[before:])


@pytest.fixture(scope="module")
def cli_traffic(cloud, tmp_path_factory, tiny_model):
    from localcloud.tinymodel import build_dataset
    tmp = tmp_path_factory.mktemp("cli")
    # An older repository whose large files are in plain LFS (the CDN path); the trainer's repositories use Xet.
    repo = cloud.hub_state.add_repo(CLI_MODEL, tiny_model(), gated="auto", xet=False)
    repo.access["alice"] = "accepted"
    cloud.hub_state.add_repo(CLI_DATASET, build_dataset(), type="dataset")
    cloud.hub_state.add_repo(UNLISTED, tiny_model())
    hf = str(Path(sys.executable).with_name("hf"))
    got = {}
    got["download_model"] = _recorded(cloud, "", hf, "download", CLI_MODEL, "--local-dir", str(tmp / "m"), tmp_path=tmp)
    # A client with Xet off reads a Xet file through the bridge host.
    got["download_bridge"] = _recorded(cloud, "", hf, "download", MODEL, "model.safetensors", "--local-dir",
                                       str(tmp / "b"), tmp_path=tmp, xet=False)
    got["download_dataset"] = _recorded(cloud, "", hf, "download", CLI_DATASET, "--repo-type", "dataset",
                                        "--local-dir", str(tmp / "d"), tmp_path=tmp)
    got["download_unlisted"] = _recorded(cloud, "", hf, "download", UNLISTED, "--local-dir", str(tmp / "u"),
                                         tmp_path=tmp)
    upload = ("import sys\nfrom huggingface_hub import HfApi\n"
              "try:\n    HfApi().upload_file(path_or_fileobj=b'stolen', path_in_repo='x.txt', repo_id=sys.argv[1])\n"
              "except Exception as e:\n    print(type(e).__name__)\n")
    got["upload"] = _recorded(cloud, upload, CLI_MODEL, tmp_path=tmp)
    for name in ("download_model", "download_bridge", "download_dataset", "download_unlisted"):
        assert got[name][0].returncode == 0, (name, got[name][0].stderr[-2000:])
    return {k: v[1] for k, v in got.items()}


def test_every_request_of_the_trainer_and_hf_download_is_allowed(scoped_plan, trainer_traffic, cli_traffic):
    from review.egress import ProxyPolicy, replay, requests_from_hub_log
    policy = ProxyPolicy.from_plan(scoped_plan)
    assert not policy.problems and policy.inspection
    allowed = (trainer_traffic + cli_traffic["download_model"] + cli_traffic["download_bridge"] +
               cli_traffic["download_dataset"])
    # The hf CLI also asks the Hub for /api/agent-harnesses when it starts: not part of a download, refused by the
    # proxy, and the download does not need it (the local Hub does not serve it: 404, and the CLI went on).
    # So do hf-xet's telemetry and the CLI's agent registry: not needed (stacks/hub_protocol.NOT_NEEDED), refused.
    extra = [e for e in allowed if not_needed(e)]
    allowed = [e for e in allowed if not not_needed(e)]
    hosts = {e["host"] for e in allowed}
    # Xet end to end: the token route on the Hub, the reconstruction on the CAS, the xorb ranges on the transfer host.
    # Older LFS files through the CDN, and a client with Xet off through the bridge.
    assert {"huggingface.co", "cas-server.xethub.hf.co", "transfer.xethub.hf.co", "cdn-lfs-us-1.hf.co",
            "cas-bridge.xethub.hf.co"} <= hosts
    assert any("/xet-read-token/" in e["wire_path"] for e in trainer_traffic), "the trainer read Xet files"
    jobs = jobs_address(scoped_plan)
    decisions = replay(policy, [(r, "allow") for r in sent_from(jobs, requests_from_hub_log(allowed))] +
                       [(r, "deny") for r in sent_from(jobs, requests_from_hub_log(extra))] +
                       [(r, "deny") for r in sent_from(OUTSIDE, requests_from_hub_log(allowed + extra))])
    wrong = [(d.request.show(), d.action, d.rule, d.why) for d in decisions if not d.as_expected]
    assert not wrong, wrong


def test_the_upload_and_the_unlisted_model_are_denied(scoped_plan, cli_traffic):
    from review.egress import ProxyPolicy, replay, requests_from_hub_log
    policy = ProxyPolicy.from_plan(scoped_plan)
    upload = cli_traffic["upload"]
    assert any(e["method"] == "POST" for e in upload)                   # the client really tried to write
    hub_side = [e for e in cli_traffic["download_unlisted"] if e["host"] == "huggingface.co"
                and e["wire_path"] not in CLI_STARTUP_CALLS]
    assert hub_side and all(UNLISTED in e["wire_path"] for e in hub_side)
    writes = [e for e in upload if e["method"] not in ("GET", "HEAD")]
    decisions = replay(policy, [(r, "deny") for address in (jobs_address(scoped_plan), OUTSIDE)
                                for r in sent_from(address, requests_from_hub_log(writes + hub_side))])
    wrong = [(d.request.show(), d.action, d.rule) for d in decisions if not d.as_expected]
    assert not wrong, wrong
    # The unlisted model's content is addressed by hash on the Xet hosts, but its Hub requests (the HEAD that names
    # the hash, the token route that hands out the CAS token) are refused, so the client never learns them.
    assert any("/xet-read-token/" in d.request.path for d in decisions)


def test_path_tricks_and_look_alike_repos_are_denied(scoped_plan):
    from review.egress import ProxyPolicy, Request
    policy = ProxyPolicy.from_plan(scoped_plan)
    tricks = [f"/{MODEL}/resolve/main/../../../{UNLISTED}/resolve/main/model.safetensors",
              f"/{MODEL}/resolve/main/%2e%2e/%2E%2E/x", f"/api/models/{MODEL}%2F..%2F..%2Fother/revision/main",
              f"/{MODEL}-evil/resolve/main/config.json", f"/api/models/{MODEL}x/revision/main",
              f"//{MODEL}/resolve/main/config.json", f"/{MODEL}\\..\\x"]
    for path in tricks:
        assert policy.decide(Request("huggingface.co", "GET", path)).action == "deny", path
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert policy.decide(Request("cas-server.xethub.hf.co", method, "/v1/xorbs/default/ab")).action == "deny"
        assert policy.decide(Request("huggingface.co", method, f"/api/models/{MODEL}/commit/main")).action == "deny"
    assert policy.decide(Request("evil.example", "GET", f"/{MODEL}/resolve/main/x")).action == "deny"
    # The dataset viewer serves the rows of any dataset: no download needs it, from the jobs' range or any other.
    for address in (jobs_address(scoped_plan), OUTSIDE):
        viewer = Request("datasets-server.huggingface.co", "GET", "/rows", query=f"dataset={UNLISTED}",
                         source_ip=address)
        assert policy.decide(viewer).action == "deny"


def test_an_unresolvable_rule_makes_the_decision_unknown(scoped_plan):
    """Fail closed: a matcher the engine cannot evaluate is UNKNOWN, never an allow or a silent deny."""
    import copy
    from review.egress import ProxyPolicy, Request
    plan = copy.deepcopy(scoped_plan)
    rule = next(r for r in plan.of_type("google_network_security_gateway_security_policy_rule")
                if r.values["name"].startswith("allow-repos"))
    rule.values["application_matcher"] = "request.path.startsWith(var_only_known_at_apply)"
    d = ProxyPolicy.from_plan(plan).decide(Request("huggingface.co", "GET", f"/{MODEL}/resolve/main/config.json",
                                                   source_ip=jobs_address(scoped_plan)))
    assert d.action == "unknown" and d.rule == rule.values["name"]
    rule.values["application_matcher"] = "${var.matcher}"
    assert ProxyPolicy.from_plan(plan).decide(Request("huggingface.co", "GET", "/")).action == "unknown"


def test_the_committed_recording_covers_what_the_trainer_and_hf_download_ask_today(trainer_traffic, cli_traffic):
    """review/traffic/recorded.jsonl is what the review replays for any environment's allowlist: it must hold every
    request shape recorded now (UPDATE_TRAFFIC=1 rewrites it from this run)."""
    from review.egress import RECORDING, load_recording, template_of
    repos = {MODEL: "model", CLI_MODEL: "model", DATASET: "dataset", CLI_DATASET: "dataset", UNLISTED: "unlisted"}
    fresh = []
    for entries, expect, note in (
            (trainer_traffic, "allow", "trl sft in the job"),
            (cli_traffic["download_model"] + cli_traffic["download_dataset"], "allow", "hf download"),
            (cli_traffic["download_bridge"], "allow", "hf download with Xet off"),
            ([e for e in cli_traffic["upload"] if e["method"] not in ("GET", "HEAD")], "deny", "upload"),
            ([e for e in cli_traffic["download_unlisted"] if e["host"] == "huggingface.co"], "deny",
             "unlisted model")):
        for e in entries:
            spare = not_needed(e)
            if spare:
                expect_here, note_here = "deny", f"{note}: {spare.purpose.split(',')[0]} (not needed to download)"
            else:
                expect_here, note_here = expect, note
            row = {"host": e["host"], "method": e["method"], "path": template_of(e, repos), "expect": expect_here,
                   "note": note_here}
            if row not in fresh:
                fresh.append(row)
    # Requests of the table's NOT_NEEDED rows this run did not observe, refused: datasets' dataset-viewer call (the
    # local cloud cannot answer datasets-server: its name is the Hub's with a prefix) and hf-xet's telemetry (sent
    # best-effort when a transfer ends, not always before the process exits).
    from stacks import hub_protocol as hp
    for spare in hp.NOT_NEEDED:
        host = hp.NOT_DOWNLOAD_HOSTS[0] if spare.role == hp.VIEWER_ROLE else hp.hosts(spare.role)[0]
        path = spare.path.split("?")[0]
        if not any(r["host"] == host and r["path"] == path for r in fresh):
            fresh.append({"host": host, "method": spare.methods[0], "path": path, "expect": "deny",
                          "note": f"{spare.purpose.split(',')[0]} (stacks/hub_protocol.NOT_NEEDED, not observed here)"})
    if os.environ.get("UPDATE_TRAFFIC"):
        RECORDING.parent.mkdir(exist_ok=True)
        RECORDING.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in fresh))
    def shape(r):      # GET and HEAD are the same read to every rule
        return r["host"], "GET" if r["method"] == "HEAD" else r["method"], r["path"], r["expect"]
    committed = {shape(r) for r in load_recording()}
    missing = [r for r in fresh if shape(r) not in committed]
    assert not missing, f"new request shapes; rerun with UPDATE_TRAFFIC=1 and review them: {missing}"
    assert all("{" in r["path"] or r["host"] != "huggingface.co" or r["path"] in CLI_STARTUP_CALLS for r in fresh)
    # The Xet download is in the recording: the token route for listed repositories (allowed) and the unlisted one
    # (refused), the CAS and the transfer host.
    xet = {(r["host"], r["path"].split("/")[1], r["expect"]) for r in fresh
           if r["host"].endswith("xethub.hf.co") or "/xet-read-token/" in r["path"]}
    assert ("huggingface.co", "api", "allow") in xet and ("cas-server.xethub.hf.co", "v2", "allow") in xet
    assert ("transfer.xethub.hf.co", "xorbs", "allow") in xet
    assert any("{unlisted}/xet-read-token/" in r["path"] and r["expect"] == "deny" for r in fresh)

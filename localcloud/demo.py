"""`make demo`: the whole hfgate story on the local cloud, offline, with the real `trl sft`.

1. the local stack's synthesized plan and the outputs contract derived from the same configuration;
2. the local cloud creates what that plan declares (secret, buckets, service accounts, IAM grants);
3. a tiny gated Llama and a chat dataset, built now, are published to the local Hub;
4. the platform admin stores alice's token with `hfgate token set`; the ML team runs `hfgate check`;
5. `hfgate submit --wait`: the bootstrap, running as the trainer, reads the pinned secret version and execs the real
   `trl sft` on CPU, which downloads the gated model from the local Hub with the token;
6. a summary: job state, steps and loss from the trainer's logs, the model in the artifacts bucket, and proof that
   it loads;
7. publishing: the admin stores a fine-grained write token scoped to alice's organization (`token set --kind
   write`); `hfgate publish` uploads the run to a private repository as the publisher account (one commit, a model
   card, hashes checked), a second publish changes nothing, and alice loads the model back with from_pretrained;
8. the failure story: bob never accepted the terms; the preflight stops his submit before any job exists;
9. the review of what is deployed (`hfgate review --live`, as a read-only reviewer, through Cloud Asset Inventory):
   the deployment passes; then a grant added by hand on the secret, a grant on the folder above the project and a
   key of the trainer made outside Terraform each fail it, named with their origin.

`--evidence DIR` keeps what the end-to-end test checks (job specs, logs, argv seen, Hub request log, transcript).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "hfgate-demo/tiny-gated-lm"
DATASET = "hfgate-demo/tiny-chat"
PUBLISHED = "acme/tiny-gated-lm-sft"     # alice's organization; the write token is scoped to it


class Demo:
    def __init__(self, evidence: Path | None, steps: int) -> None:
        self.t0 = time.time()
        self.evidence = evidence
        self.steps = steps
        self.transcript: list[str] = []
        self.summary: dict = {}

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.transcript.append(text)

    def step(self, n: int, title: str) -> None:
        self.say(f"\n[{time.time() - self.t0:5.1f}s] {n}/9 {title}")

    def hfgate(self, cloud, *args: str, as_member: str | None = None, stdin: str | None = None,
               show: bool = True) -> tuple[int, str, str]:
        """Run the real CLI in a child process, as a user would, streaming what it prints."""
        self.say(f"$ hfgate {' '.join(args)}" + (" < token" if stdin is not None else ""))
        env = {**os.environ, **cloud.env(as_member=as_member)}
        proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.close()
        err_lines: list[str] = []

        import threading

        def pump():
            for line in proc.stderr:
                err_lines.append(line)
                if show:
                    self.say("  " + line.rstrip("\n"))
        t = threading.Thread(target=pump)
        t.start()
        out = proc.stdout.read()
        t.join()
        code = proc.wait()
        if show and out.strip() and "--json" not in args:
            for line in out.rstrip("\n").splitlines():
                self.say("  " + line)
        self.transcript.append(out)
        return code, out, "".join(err_lines)


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.0f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"


def trainer_metrics(lines: list[str]) -> dict:
    """Steps and losses from the lines TRL/transformers print (`{'loss': ..., 'epoch': ...}` per logging step)."""
    losses, final = [], None
    for line in lines:
        line = line.strip()
        if not (line.startswith("{") and line.endswith("}")):
            continue
        try:
            d = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        if "loss" in d:
            losses.append(float(d["loss"]))
        if "train_loss" in d:
            final = float(d["train_loss"])
    return {"steps": len(losses), "losses": losses, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None, "train_loss": final}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="training steps (default 12)")
    parser.add_argument("--evidence", type=Path, help="keep job specs, logs, argv, Hub log and transcript here")
    parser.add_argument("--plan", type=Path, help="synthesized local stack (default: cdktf.out, synthesized if"
                        " missing)")
    args = parser.parse_args(argv)

    from localcloud.cloud import LocalCloud, ensure_plan
    from review.plan import load as load_plan

    demo = Demo(args.evidence, args.steps)
    demo.say("hfgate demo: fine-tune a tiny gated model on the local cloud (offline, real protocols, real trl)")

    demo.step(1, "the local stack and its outputs contract")
    plan_path = args.plan or ensure_plan("local")
    plan = load_plan(plan_path)
    demo.say(f"  plan: {plan_path.relative_to(ROOT) if plan_path.is_relative_to(ROOT) else plan_path}"
             f" ({len(plan.resources)} resources)")

    state = Path(tempfile.mkdtemp(prefix="hfgate-demo-"))
    cloud = LocalCloud(state_dir=state, plan=plan_path)
    o = cloud.outputs
    demo.say(f"  outputs: project {o.project_id}, region {o.region}, egress {o.egress_mode},"
             f" trainer {o.trainer_email}")
    code = 1
    try:
        demo.step(2, "start the local cloud and create what the plan declares")
        cloud.start()
        demo.say(f"  up in {cloud.startup_s:.1f}s: Hub {cloud.hub.url}, Secret Manager + Vertex AI"
                 f" 127.0.0.1:{cloud.grpc_port}, GCS {cloud.gcs.url}")
        demo.say(f"  secret {o.token_secret}; buckets {', '.join(cloud.buckets)}")
        readers = sorted(m for m, r, res in cloud.grants.triples
                         if res == f"secret:{cloud.names.secret_id}" and r == "roles/secretmanager.secretAccessor")
        demo.say(f"  who may read the token: {', '.join(readers)}")

        demo.step(3, "build a tiny gated Llama and a chat dataset, publish them to the local Hub")
        from localcloud.tinymodel import build_dataset, build_model
        t = time.time()
        files = build_model()
        repo = cloud.hub_state.add_repo(MODEL, files)
        ds = cloud.hub_state.add_repo(DATASET, build_dataset(), type="dataset")
        size = sum(len(b) for b in files.values())
        demo.say(f"  {MODEL}@{repo.refs['main'][:12]}: gated={repo.gated}, {len(files)} files,"
                 f" {size / 1024:.0f} KiB, built in {time.time() - t:.1f}s")
        demo.say(f"  {DATASET}@{ds.refs['main'][:12]}: 64 chat rows")
        demo.say("  alice accepted the model's terms; bob never did")

        demo.step(4, "store alice's token (platform admin), then preflight it (ML team)")
        rc, _, _ = demo.hfgate(cloud, "token", "set", "--model", MODEL, as_member=cloud.admin,
                               stdin=cloud.hub_tokens["alice-read"] + "\n")
        if rc:
            raise SystemExit(f"token set failed ({rc})")
        rc, _, _ = demo.hfgate(cloud, "check", "--model", MODEL)
        if rc:
            raise SystemExit(f"preflight failed ({rc})")

        demo.step(5, f"submit: Vertex AI custom job, secret-ref delivery, real trl sft for {args.steps} steps")
        before = cloud.jobs.create_calls
        rc, out, _ = demo.hfgate(cloud, "submit", "--model", MODEL, "--dataset", DATASET, "--max-steps",
                                 str(args.steps), "--no-lora", "--display-name", "hfgate-demo", "--wait", "--json",
                                 "--", "--learning_rate", "3e-3", "--per_device_train_batch_size", "8",
                                 "--max_length", "64")
        result = json.loads(out) if out.strip().startswith("{") else {}
        job_id = result.get("job", "").rsplit("/", 1)[-1]

        demo.step(6, "summary")
        job = cloud.jobs.jobs.get(job_id)
        lines = [line for _, line in cloud.jobs.logs.get(job_id, [])]
        metrics = trainer_metrics(lines)
        state_name = job.state.name if job else "NO_JOB"
        demo.say(f"  job {result.get('job')}: {state_name.removeprefix('JOB_STATE_')}")
        if metrics["steps"]:
            demo.say(f"  trainer: {metrics['steps']} logged steps, loss {metrics['first_loss']:.3f} ->"
                     f" {metrics['final_loss']:.3f}")
        client = cloud.gcs.client(as_member=cloud.submitter)      # the submitter reads its results
        prefix = "runs/hfgate-demo/model/"
        blobs = sorted(client.list_blobs(o.artifacts_bucket_name, prefix=prefix), key=lambda b: b.name)
        demo.say(f"  model in {o.artifacts_bucket}/{prefix}: " + ", ".join(
            f"{b.name.removeprefix(prefix)} ({_size(b.size)})" for b in blobs if "/" not in b.name.removeprefix(prefix)))
        loaded = {}
        if blobs:
            with tempfile.TemporaryDirectory() as d:
                for b in blobs:
                    target = Path(d) / b.name.removeprefix(prefix)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    b.download_to_filename(str(target))
                from transformers import AutoModelForCausalLM, AutoTokenizer
                from transformers.utils import logging as tlogging
                tlogging.disable_progress_bar()
                model = AutoModelForCausalLM.from_pretrained(d)
                tok = AutoTokenizer.from_pretrained(d)
                prompt = tok.apply_chat_template([{"role": "user", "content": "Does aspirin say it is orally"
                                                   " bioavailable?"}], tokenize=False, add_generation_prompt=True)
                ids = tok(prompt, return_tensors="pt")
                gen = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
                text = tok.decode(gen[0][ids["input_ids"].shape[1]:], skip_special_tokens=True)
                loaded = {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
                          "generated": text}
            demo.say(f"  from_pretrained: {loaded['class']} with {loaded['parameters']:,} parameters;"
                     f" it answers {loaded['generated'].strip()!r}")
        jobs_after_success = cloud.jobs.create_calls

        demo.step(7, f"publish the fine-tune to {PUBLISHED} (private), with a write token of its own")
        published = _publish(demo, cloud)

        demo.step(8, "the failure story: bob never accepted the terms")
        demo.hfgate(cloud, "token", "set", as_member=cloud.admin, stdin=cloud.hub_tokens["bob-read"] + "\n")
        rc_bob, _, err_bob = demo.hfgate(cloud, "submit", "--model", MODEL, "--dataset", DATASET, "--max-steps",
                                         str(args.steps), "--no-lora")
        import re
        took = re.search(r"not ready: nothing was submitted \((\d+\.\d+)s\)", err_bob)
        fix = re.search(r"fix: (.*accept the terms.*)", err_bob)
        bob = {"seconds": float(took.group(1)) if took else None, "fix": fix.group(1).strip() if fix else None}
        created_for_bob = cloud.jobs.create_calls - jobs_after_success
        demo.say(f"  exit {rc_bob}; preflight took {bob['seconds'] or 0:.2f}s; jobs created for bob:"
                 f" {created_for_bob}")

        demo.step(9, "review what is deployed: grants and keys made outside the plan, named by origin")
        live = _review_live(demo, cloud, plan_path)

        demo.summary = {
            "live_review": live,
            "job": result.get("job"), "state": state_name, "create_calls": jobs_after_success - before,
            "trainer": metrics, "artifacts": [b.name for b in blobs], "loaded": loaded, "published": published,
            "blocked": {"exit_code": rc_bob, "preflight_seconds": bob["seconds"], "jobs_created": created_for_bob,
                        "fix": bob["fix"]},
            "seconds": round(time.time() - demo.t0, 1),
        }
        ok = state_name == "JOB_STATE_SUCCEEDED" and bool(loaded) and rc_bob == 4 and created_for_bob == 0 \
            and published.get("loaded_from_hub", False) and live["clean_exit"] == 0 and live["drifted_exit"] == 1 \
            and len(live["origins"]) == 3
        demo.say(f"\n[{time.time() - demo.t0:5.1f}s] demo {'complete' if ok else 'FAILED'}")
        code = 0 if ok else 1
    finally:
        if args.evidence:
            _keep_evidence(cloud, demo, args.evidence)
        cloud.stop()
        import shutil
        shutil.rmtree(state, ignore_errors=True)
    return code


def _review_live(demo: Demo, cloud, plan_path: Path) -> dict:
    """`hfgate review --live` as the seed's read-only reviewer (roles/cloudasset.viewer, roles/logging.viewer): the
    deployment as applied, then after three changes made outside the plan."""
    from google.iam.v1 import iam_policy_pb2

    import re

    from jobs.endpoints import secret_manager
    from localcloud.asset import DEFAULT_FOLDER
    reviewer = "serviceAccount:hfgate-reviewer@hfgate-local.iam.gserviceaccount.com"
    saved = os.environ.get("CDKTF_OUTDIR")
    os.environ["CDKTF_OUTDIR"] = str(plan_path.parents[2])     # the plan this demo deployed

    def review() -> tuple[int, dict]:
        # The platform admin set the tokens (steps 4, 7, 8); its grant is the seed's, above what the review reads:
        # the reviewer accepts it as the tokens' setter (each version's adder comes from the audit log).
        rc, _, err = demo.hfgate(cloud, "review", "--live", "--env", "local", "--accept",
                                 "examples/review-accept-local.toml", as_member=reviewer, show=False)
        verdict = next((line for line in err.splitlines() if line.startswith("review ")), err.strip()[-300:])
        demo.say("  " + re.sub(r": \S+REPORT\.md", "", verdict.split(" (unexpected token readers", 1)[0]))
        report = json.loads((ROOT / "reports" / "local-live" / "report.json").read_text())
        return rc, report
    try:
        clean_rc, clean = review()
        demo.say(f"  read {', '.join(clean['live']['scopes_read'])}: {clean['live']['bindings']} bindings, drift:"
                 f" {len(clean['live']['drift'])}")
        with cloud.environ(as_member=cloud.admin):
            client = secret_manager()
            policy = client.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(
                resource=cloud.outputs.token_secret))
            policy.bindings.add(role="roles/secretmanager.secretAccessor", members=["user:mallory@example.com"])
            client.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=cloud.outputs.token_secret,
                                                                              policy=policy))
        cloud.assets.grant("user:eve@example.com", "roles/secretmanager.secretAccessor", f"folder:{DEFAULT_FOLDER}")
        cloud.assets.create_key(cloud.outputs.trainer_email)
        demo.say("  after the apply, by hand: the platform admin adds user:mallory@example.com to the token secret"
                 f" (setIamPolicy), an operator grants user:eve@example.com Secret Accessor on"
                 f" folders/{DEFAULT_FOLDER}, and a key of the trainer is created outside Terraform")
        drifted_rc, drifted = review()
        origins = sorted({p["origin"] for p in drifted["live"]["deployed_only_paths"]
                          if p.get("kind") in ("reads", "holds-key")})
        for p in drifted["live"]["deployed_only_paths"]:
            if p.get("kind") in ("reads", "holds-key"):
                who = p["principal"].split("/keys/")[0] + ("/keys/..." if "/keys/" in p["principal"] else "")
                demo.say(f"    {who} {p['kind']} the token [{p['origin']}]")
    finally:
        if saved is None:
            os.environ.pop("CDKTF_OUTDIR", None)
        else:
            os.environ["CDKTF_OUTDIR"] = saved
    return {"clean_exit": clean_rc, "drifted_exit": drifted_rc, "origins": origins,
            "drift": len(drifted["live"]["drift"])}


def _publish(demo: Demo, cloud) -> dict:
    """The platform admin stores alice's fine-grained write token (scoped to acme); the ML team publishes the run as
    the submitter, which impersonates the publisher account (the write token's only reader); then alice loads it
    back from the Hub with from_pretrained."""
    rc, _, _ = demo.hfgate(cloud, "token", "set", "--kind", "write", "--repo", PUBLISHED, as_member=cloud.admin,
                           stdin=cloud.hub_tokens["alice-fg-write-acme"] + "\n")
    if rc:
        return {"exit_code": rc}
    rc, _, _ = demo.hfgate(cloud, "publish", "hfgate-demo", "--repo", PUBLISHED)
    if rc:
        return {"exit_code": rc}
    first = cloud.hub_state.repos[PUBLISHED]
    result = {"commit": first.refs["main"], "private": first.private,
              "files": len(first.commits[first.refs["main"]]) - 1}     # without the Hub's .gitattributes
    rc2, out2, _ = demo.hfgate(cloud, "publish", "hfgate-demo", "--repo", PUBLISHED, "--json")
    again = json.loads(out2) if rc2 == 0 and out2.strip().startswith("{") else {}
    # As alice would, in a process of her own: the Hub's address and her read token from the environment.
    code = ("import json, sys\nfrom transformers import AutoModelForCausalLM\nfrom transformers.utils import logging\n"
            "logging.disable_progress_bar()\nm = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "print(json.dumps({'class': type(m).__name__, 'parameters': sum(p.numel() for p in m.parameters())}))")
    with tempfile.TemporaryDirectory(prefix="hfgate-demo-hf-") as home:
        env = {**os.environ, **cloud.env(), "HF_HOME": home, "HF_TOKEN": cloud.hub_tokens["alice-read"],
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        proc = subprocess.run([sys.executable, "-c", code, PUBLISHED], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
    try:
        loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        loaded = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    repo = cloud.hub_state.repos.get(PUBLISHED)
    demo.say(f"  again: uploaded {again.get('uploaded')} files, commits on the Hub: "
             f"{len(repo.history) if repo else 0} (publishing the same run twice changes nothing)")
    demo.say(f"  from_pretrained({PUBLISHED!r}) from the Hub: " + (
        f"{loaded['class']} with {loaded['parameters']:,} parameters" if "class" in loaded else loaded["error"]))
    return {"exit_code": 0, "repo": PUBLISHED, "commit": result.get("commit"), "private": result.get("private"),
            "files": result.get("files"), "again_uploaded": again.get("uploaded"),
            "commits": len(repo.history) if repo else 0, "loaded_from_hub": "class" in loaded, "loaded": loaded}


def _keep_evidence(cloud, demo: Demo, where: Path) -> None:
    from google.cloud.aiplatform_v1 import types as ai
    where.mkdir(parents=True, exist_ok=True)
    if not cloud.started:
        (where / "transcript.log").write_text("\n".join(demo.transcript))
        return
    jobs = {jid: json.loads(ai.CustomJob.to_json(j)) for jid, j in cloud.jobs.jobs.items()}
    (where / "jobs.json").write_text(json.dumps(jobs, indent=2))
    (where / "job-logs.json").write_text(json.dumps({jid: [line for _, line in lines]
                                                     for jid, lines in cloud.jobs.logs.items()}, indent=2))
    (where / "argv.json").write_text(json.dumps(cloud.jobs.cmdlines, indent=2))
    (where / "hub-requests.json").write_text(json.dumps(cloud.hub_state.log, indent=2, default=str))
    (where / "secret-calls.json").write_text(json.dumps(cloud.secrets.calls, indent=2))
    (where / "transcript.log").write_text("\n".join(demo.transcript))
    (where / "summary.json").write_text(json.dumps(demo.summary, indent=2))
    # The values the test must not find anywhere else; mode 600, test evidence only.
    tokens = where / "hub-tokens.json"
    tokens.write_text(json.dumps(cloud.hub_tokens))
    tokens.chmod(0o600)


if __name__ == "__main__":
    sys.exit(main())

"""hfgate: check a Hugging Face token against the Hub and launch GPU training on Vertex AI, without leaking it.

The start-up path imports nothing heavy: clients load inside the command that needs them.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

EXIT_CODES = """exit codes:
  0  ok
  1  other failure (job failed, quota exhausted, ...)
  2  usage or configuration (bad option, missing/corrupt/old outputs file)
  3  token invalid or malformed (empty, placeholder like "$HF_TOKEN", Bearer prefix, revoked, ...)
  4  access denied (terms not accepted, pending or rejected, private, fine-grained scope, IAM)
  5  not found (model, revision, secret or secret version)
  6  network or transient error after bounded retries
"""

EXAMPLES = """examples:
  hfgate check --env dev --model google/txgemma-2b-predict
  hfgate submit --env dev --model google/txgemma-2b-predict --dataset org/chat --max-steps 100 --wait
  hfgate submit --env dev --model M --dataset D --dry-run       # print the exact request, create nothing
  hfgate submit ... -- --learning_rate 2e-5                     # after --: passed to trl sft verbatim
  hfgate status JOB | hfgate logs JOB | hfgate cancel JOB
  hfgate token set --env dev < token.txt                        # validated first; never from argv
environment: --outputs FILE, else $HFGATE_OUTPUTS, else outputs/<env>.json (cdktn output --outputs-file)
"""


def _outputs(args):
    from stacks.contract import OutputsError, load_outputs
    path = args.outputs or os.environ.get("HFGATE_OUTPUTS") or (f"outputs/{args.env}.json" if args.env else None)
    if not path:
        raise OutputsError("no outputs contract given",
                           "pass --env ENV (reads outputs/ENV.json) or --outputs FILE; produce it with"
                           " `cdktn output hfgate-ENV --outputs-file outputs/ENV.json`")
    return load_outputs(Path(path), env=args.env)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", help="environment name (config/<env>.toml; outputs/<env>.json)")
    common.add_argument("--outputs", help="outputs contract JSON (cdktn output / terraform output -json)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens (never the token)")

    p = argparse.ArgumentParser(prog="hfgate", description=__doc__, epilog=EXIT_CODES + "\n" + EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chk = sub.add_parser("check", parents=[common], help="preflight the stored token against a model",
                         epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("--model", required=True, help="model id, case-sensitive (org/name)")
    chk.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    chk.add_argument("--token-version", default="latest", help="secret version to check (default latest)")

    sm = sub.add_parser("submit", parents=[common], help="preflight, then launch trl sft on Vertex AI",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sm.add_argument("--model", required=True)
    sm.add_argument("--dataset", required=True, help="Hub dataset id for trl sft")
    sm.add_argument("--revision", default="main")
    sm.add_argument("--machine-type", help="default: the environment's (outputs contract)")
    sm.add_argument("--accelerator", dest="accelerator_type", help="e.g. NVIDIA_L4, NVIDIA_H100_80GB")
    sm.add_argument("--accelerator-count", type=int)
    sm.add_argument("--replica-count", type=int, default=1, help="nodes (more than 1 adds a second worker pool)")
    sm.add_argument("--max-steps", type=int)
    sm.add_argument("--epochs", type=float)
    sm.add_argument("--no-lora", dest="lora", action="store_false", help="full fine-tune instead of LoRA")
    sm.add_argument("--dtype", choices=["bfloat16", "float16", "float32", "auto"],
                    help="default: bfloat16 on GPUs, float32 on CPU-only machines")
    sm.add_argument("--timeout", type=int, default=24 * 3600, help="seconds (default 86400)")
    sm.add_argument("--scheduling", default="STANDARD", choices=["STANDARD", "SPOT", "FLEX_START"])
    sm.add_argument("--image", help="training container (default: the environment's)")
    sm.add_argument("--trl-version", help="TRL in that image, X.Y (known images need none)")
    sm.add_argument("--token-delivery", default="secret-ref", choices=["secret-ref", "env", "mirror"],
                    help="secret-ref (default): the job reads the pinned version itself; env: HF_TOKEN in the"
                         " job spec, readable by anyone with customJobs.get; mirror: train from `hfgate mirror`'s"
                         " copy in the bucket, no token and no Hugging Face egress in the job")
    sm.add_argument("--backend", default="vertex", choices=["vertex", "hf-jobs"],
                    help="vertex (default): Vertex AI custom job; hf-jobs: Hugging Face Jobs, token as a job secret")
    sm.add_argument("--flavor", help="hf-jobs hardware flavor (default: mapped from --accelerator/-count)")
    sm.add_argument("--namespace", help="hf-jobs namespace (default: the token's user)")
    sm.add_argument("--token-version", default="latest")
    sm.add_argument("--display-name")
    sm.add_argument("--force-new", action="store_true", help="create a new job even if this request ran already")
    sm.add_argument("--dry-run", action="store_true", help="print the exact request (token-free), create nothing")
    sm.add_argument("--wait", action="store_true", help="follow the job and its logs; exit 1 if it fails")
    sm.add_argument("trainer_args", nargs="*", help="after --: passed to trl sft verbatim")

    for name, helptext in (("status", "show a job"), ("logs", "print a job's logs"), ("cancel", "cancel a job")):
        c = sub.add_parser(name, parents=[common], help=helptext)
        c.add_argument("job", help="job id or full resource name")
    sub.add_parser("machines", parents=[common], help="the machine/accelerator table submit validates against")

    rv = sub.add_parser("review", help="security review of the synthesized stacks or a terraform plan",
                        description="Who can reach the token (every permission path: read, IAM change,"
                        " impersonation followed transitively, writing what jobs run, reading env-delivery job"
                        " specs), who can replace it, what could not be resolved (UNKNOWN), the IAM matrix, egress,"
                        " data protection, findings (project policies + checkov) and a Mermaid diagram. Writes"
                        " reports/<env>/REPORT.md, report.json and report.sarif; prints the --format one. Offline.",
                        epilog="exit codes: 0 PASS; 1 FAIL: a policy or checkov failed, a principal other than the"
                        " trainer and submitter reaches the token, or something could not be resolved (UNKNOWN) and"
                        " was not accepted; 2 bad input\n\naccept file (TOML), each entry with a reason:\n"
                        "  [[unknown]]\n  address = \"google_project_iam_member.from_var\"\n  reason = \"var.role is"
                        " roles/logging.viewer in every workspace (checked)\"\n  [[reader]]\n  principal ="
                        " \"group:ml-oncall@example.com\"\n  reason = \"break-glass, approved in SEC-123\"\n"
                        "\nexamples:\n  hfgate review --env dev\n  terraform show -json plan.out > plan.json &&"
                        " hfgate review --env prod --plan plan.json --format sarif\n  hfgate review --env dev --accept"
                        " review-accept.toml",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rv.add_argument("--env", default="dev", help="environment (default dev): cdktf.out/stacks/hfgate-<env>/")
    rv.add_argument("--plan", help="`terraform show -json` output to review instead of the synthesized stack")
    rv.add_argument("--format", default="md", choices=["md", "json", "sarif"], help="what to print (all are written)")
    rv.add_argument("--out", help="output folder (default reports/<env>)")
    rv.add_argument("--accept", help="TOML file of UNKNOWNs and readers the reviewer accepts, each with a reason")
    rv.add_argument("--no-checkov", action="store_true", help="skip the checkov scan")

    mi = sub.add_parser("mirror", parents=[common], help="copy a gated repo into the mirror bucket once",
                        description="Download a snapshot once with the stored token and upload it with a verified"
                        " manifest (SHA-256 per file) to gs://MIRROR/models/<id>/<commit>/ (datasets: datasets/<id>/<commit>/); then"
                        " `submit --token-delivery mirror` trains with no token in the job.",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    mi.add_argument("--model", help="model id to mirror")
    mi.add_argument("--dataset", help="dataset id to mirror")
    mi.add_argument("--revision", default="main")
    mi.add_argument("--allow-pickle", action="store_true", help="also mirror repos that only have pickle weights")
    mi.add_argument("--token-version", default="latest")

    tok = sub.add_parser("token", help="store, inspect and rotate the Hugging Face token in Secret Manager",
                         description="The token never travels in argv: `set` and `rotate` read it from stdin (hidden"
                         " prompt on a terminal) or from your local Hugging Face login.",
                         epilog=EXIT_CODES + "\nexamples:\n  hfgate token set --env dev --model google/txgemma-2b-predict"
                         " < token.txt\n  hfgate token set --env dev --from-hf-login\n  hfgate token status --env dev"
                         "\n  hfgate token rotate --env dev < new-token.txt\n",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    for name, helptext in (("set", "validate a token against the Hub, add it as a new version, disable the old"),
                           ("rotate", "set, keeping versions that running jobs still use enabled (unless --force)")):
        t = tsub.add_parser(name, parents=[common], help=helptext, description=helptext, epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        t.add_argument("--from-hf-login", action="store_true", help="use huggingface_hub.get_token() instead of stdin")
        t.add_argument("--model", help="also check gated access to this model before storing")
        t.add_argument("--revision", default="main")
        if name == "rotate":
            t.add_argument("--force", action="store_true", help="disable old versions even if running jobs use them")
    tsub.add_parser("status", parents=[common], help="versions, owner and role, rotation due date, jobs per version")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="hfgate: %(levelname)s %(message)s")
    from jobs.redact import harden
    harden()
    from stacks.errors import HfgateError
    try:
        return COMMANDS[args.command](args)
    except HfgateError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": exc.message, "fix": exc.fix, "exit_code": exc.exit_code}))
        print(f"hfgate: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hfgate: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: say so in one line, with the traceback only under -v
        if getattr(args, "verbose", False):
            logging.exception("internal error")
        print(f"hfgate: internal error: {type(exc).__name__} (run with -v for details; please report it)",
              file=sys.stderr)
        return 1


def cmd_check(args) -> int:
    from jobs.preflight import preflight
    from jobs.secret import read_token
    outputs = _outputs(args)
    pinned = read_token(outputs, args.token_version)
    report = preflight(pinned.token, args.model, args.revision)
    print(report.to_json() if args.json else report.table())
    return report.exit_code


def _preflight_gate(args, token, repo_id: str, **table_text):
    """The preflight before anything is created: the table on stderr (JSON on stdout when it fails under --json)."""
    from jobs.preflight import preflight
    report = preflight(token, repo_id, args.revision)
    if not args.json:
        print(report.table(**table_text), file=sys.stderr)
    if not report.ok and args.json:
        print(report.to_json())
    return report


def _train_request(args):
    from jobs.errors import UsageError
    from jobs.jobspec import Scheduling, TokenDelivery, TrainRequest
    trl_version = None
    if args.trl_version:
        try:
            trl_version = tuple(int(x) for x in args.trl_version.split(".")[:2])
        except ValueError:
            raise UsageError(f"--trl-version {args.trl_version!r} is not X.Y", "e.g. --trl-version 0.19") from None
    return TrainRequest(model=args.model, dataset=args.dataset, revision=args.revision,
                        machine_type=args.machine_type, accelerator_type=args.accelerator_type,
                        accelerator_count=args.accelerator_count, replica_count=args.replica_count,
                        max_steps=args.max_steps, epochs=args.epochs, lora=args.lora, dtype=args.dtype,
                        timeout_s=args.timeout, scheduling=Scheduling(args.scheduling), image=args.image,
                        trl_version=trl_version, extra_args=tuple(args.trainer_args), display_name=args.display_name,
                        token_delivery=TokenDelivery(args.token_delivery),
                        nonce=os.urandom(8).hex() if args.force_new else "")


def cmd_submit(args) -> int:
    from jobs import submit
    from jobs.errors import UsageError
    from jobs.jobspec import TokenDelivery, build_custom_job
    from jobs.secret import read_token

    outputs = _outputs(args)
    req = _train_request(args)
    if args.backend == "hf-jobs":
        if req.token_delivery is not TokenDelivery.SECRET_REF:
            raise UsageError("--backend hf-jobs always passes the token as a Hugging Face Jobs secret",
                             "drop --token-delivery (secret-ref, env and mirror are Vertex AI options)")
        return _submit_hf_jobs(args, req, outputs)
    model_path = dataset_path = mirror_checks = None
    if req.token_delivery is TokenDelivery.MIRROR:
        from jobs.mirror import prefix_for, require_mirror, resolve_commit
        bucket = outputs.mirror_bucket_name
        pinned = read_token(outputs, args.token_version)   # resolves revisions to commits; never sent to the job
        mirror_checks, paths = [], []
        for repo_id, revision, repo_type in ((req.model, req.revision, "model"), (req.dataset, "main", "dataset")):
            commit = resolve_commit(pinned.token, repo_id, revision, repo_type)
            _, digest = require_mirror(outputs, repo_id, commit, repo_type)
            path = f"/gcs/{bucket}/{prefix_for(repo_id, commit, repo_type)}".rstrip("/")
            mirror_checks.append({"dir": path, "manifest_sha256": digest})
            paths.append(path)
        model_path, dataset_path = paths
        print(f"training from the mirror {model_path} (verified; no token, no Hugging Face egress in the job)",
              file=sys.stderr)
        version_name, fingerprint, token_value = "", "", None
    else:
        pinned = read_token(outputs, args.token_version)
        report = _preflight_gate(args, pinned.token, args.model)
        if not report.ok:
            return report.exit_code
        if req.token_delivery is TokenDelivery.ENV:
            print("hfgate: warning: --token-delivery env puts HF_TOKEN in the job spec: anyone with"
                  " aiplatform.customJobs.get can read it. Prefer the default secret-ref.", file=sys.stderr)
        version_name, fingerprint = pinned.version_name, pinned.token.fingerprint
        token_value = pinned.token.reveal() if req.token_delivery is TokenDelivery.ENV else None
    body = build_custom_job(req, outputs, token_version=version_name, token_fingerprint=fingerprint,
                            hf_token_value=token_value, model_path=model_path, dataset_path=dataset_path,
                            mirror_checks=mirror_checks)
    if args.dry_run:
        shown = json.loads(json.dumps(body))
        for e in shown["job_spec"]["worker_pool_specs"][0]["container_spec"]["env"]:
            if e["name"] == "HF_TOKEN":
                e["value"] = f"<redacted sha256:{fingerprint}>"
        print(json.dumps({"parent": f"projects/{outputs.project_id}/locations/{outputs.region}",
                          "custom_job": shown}, indent=2))
        return 0
    job, created = submit.create(body, outputs)
    result = {"job": job.name, "state": job.state.name, "created": created,
              "request_id": body["labels"]["hfgate-request-id"], "token_version": version_name or None,
              "token_fingerprint": fingerprint or None, "delivery": req.token_delivery.value}
    print(("submitted " if created else "already submitted (same request id) ") + job.name, file=sys.stderr)
    if args.wait:
        job = submit.wait(job, outputs)
        result["state"] = job.state.name
        if job.state.name != "JOB_STATE_SUCCEEDED":
            result["error"] = job.error.message
            print(f"hfgate: job {job.state.name.removeprefix('JOB_STATE_')}: {job.error.message}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else result["job"])
    return 0 if result["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING",
                                    "JOB_STATE_RUNNING") else 1


def _submit_hf_jobs(args, req, outputs) -> int:
    from jobs import hfjobs
    from jobs.jobspec import IMAGE_TRL, label_value, machine_shape, trl_args
    from jobs.secret import read_token

    image = args.image or hfjobs.DEFAULT_IMAGE
    version = req.trl_version or IMAGE_TRL.get(image) or (1, 16)
    flavor = args.flavor or hfjobs.flavor_for(*machine_shape(req, outputs)[1:])
    command = hfjobs.trainer_command(trl_args(req, version, "/tmp/output", cpu=flavor.startswith("cpu")))
    pinned = read_token(outputs, args.token_version)
    report = _preflight_gate(args, pinned.token, args.model)
    if not report.ok:
        return report.exit_code
    labels = {"managed-by": "hfgate", "hfgate-model": label_value(req.model),
              "hfgate-token-version": pinned.version, "hfgate-token-fp": pinned.token.fingerprint}
    request = {"image": image, "command": command, "flavor": flavor, "namespace": args.namespace or report.user,
               "secrets": ["HF_TOKEN"], "labels": labels, "timeout": req.timeout_s}
    if args.dry_run:
        print(json.dumps({"backend": "hf-jobs", **request}, indent=2))
        return 0
    info = hfjobs.run(pinned.token, command, image=image, flavor=flavor, namespace=request["namespace"],
                      labels=labels, timeout_s=req.timeout_s, env={"HF_HUB_DISABLE_TELEMETRY": "1",
                                                                    "TRL_USE_RICH": "0"})
    print(f"submitted Hugging Face job {info.id} ({flavor})", file=sys.stderr)
    result = {"backend": "hf-jobs", "job": info.id, "state": info.status.stage, "flavor": flavor,
              "namespace": request["namespace"], "token_version": pinned.version_name,
              "token_fingerprint": pinned.token.fingerprint}
    if args.wait:
        info = hfjobs.wait(pinned.token, info.id, request["namespace"])
        result["state"] = info.status.stage
    print(json.dumps(result, indent=2) if args.json else info.id)
    return 1 if result["state"] in ("ERROR", "CANCELED", "DELETED") else 0


def cmd_review(args) -> int:
    from review import report as rv
    from review.plan import load, synthesized
    root = Path(__file__).resolve().parent.parent
    if args.plan:
        path = Path(args.plan)
    else:
        path = synthesized(Path(os.environ.get("CDKTF_OUTDIR") or root / "cdktf.out"), args.env)
        if not path.exists():
            from stacks.errors import UsageError
            raise UsageError(f"no synthesized stack at {path}", "run `make synth` first (or pass --plan plan.json)")
    plan = load(path)
    accepts = rv.load_accepts(Path(args.accept) if args.accept else None)
    checkov = None if args.no_checkov else rv.run_checkov(path if args.plan else path.parent,
                                                         plan_json=bool(args.plan))
    report = rv.review(plan, checkov, accepts)
    paths = rv.write(report, Path(args.out or root / "reports" / args.env), str(path))
    print(paths[args.format].read_text())
    failed = [p["id"] for p in report["policies"] if not p["passed"]]
    print(f"review {'PASS' if report['ok'] else 'FAIL'}: {paths['md']}"
          + (f" (failed: {', '.join(failed)})" if failed else "")
          + (f" (unexpected token readers: {', '.join(report['unexpected_readers'])})"
             if report["unexpected_readers"] else "")
          + (f" (UNKNOWN: {', '.join(report['unresolved'])})" if report["unresolved"] else ""), file=sys.stderr)
    return 0 if report["ok"] else 1


def cmd_mirror(args) -> int:
    from jobs.errors import UsageError
    from jobs.mirror import mirror
    from jobs.secret import _who, read_token
    if bool(args.model) == bool(args.dataset):
        raise UsageError("mirror needs exactly one of --model or --dataset", "e.g. hfgate mirror --model org/name")
    outputs = _outputs(args)
    pinned = read_token(outputs, args.token_version)
    repo_id, repo_type = (args.model, "model") if args.model else (args.dataset, "dataset")
    if repo_type == "model":
        report = _preflight_gate(args, pinned.token, repo_id, ok_text="ready to mirror",
                                 fail_text="not mirrored: nothing was uploaded")
        if not report.ok:
            return report.exit_code
    result = mirror(outputs, pinned.token, repo_id, args.revision, repo_type, allow_pickle=args.allow_pickle,
                    who=_who())
    data = {"uri": result.uri, "commit": result.commit, "files": result.files, "bytes": result.bytes,
            "uploaded": result.uploaded}
    print(json.dumps(data, indent=2) if args.json else
          f"{result.uri} ({result.files} files, {result.bytes / 1e6:.1f} MB, {result.uploaded} uploaded)")
    return 0


def cmd_status(args) -> int:
    from jobs import submit
    outputs = _outputs(args)
    job = submit.get(args.job, outputs)
    info = {"job": job.name, "display_name": job.display_name, "state": job.state.name,
            "labels": dict(job.labels), "error": job.error.message or None}
    print(json.dumps(info, indent=2) if args.json else
          f"{job.name}\n  {job.display_name}: {job.state.name.removeprefix('JOB_STATE_')}"
          + (f"\n  error: {job.error.message}" if job.error.message else ""))
    return 0


def cmd_logs(args) -> int:
    from jobs import submit
    outputs = _outputs(args)
    job = submit.get(args.job, outputs)
    token, lines = None, []
    while True:
        page, token = submit.logs(job.name, outputs, token)
        lines += page
        if not token:
            break
    print(json.dumps(lines) if args.json else "\n".join(lines))
    return 0


def cmd_cancel(args) -> int:
    from jobs import submit
    submit.cancel(args.job, _outputs(args))
    print(f"cancel requested for {args.job}", file=sys.stderr)
    return 0


def cmd_machines(args) -> int:
    from stacks.facts import MACHINES, N1_ACCELERATORS
    rows = [{"machine_type": m.machine_type, "accelerator_type": m.accelerator_type,
             "accelerator_counts": list(m.accelerator_counts), "note": m.note} for m in MACHINES.values()]
    if args.json:
        print(json.dumps({"machines": rows, "n1_accelerators": {k: list(v) for k, v in N1_ACCELERATORS.items()}}))
    else:
        for r in rows:
            print(f"{r['machine_type']:<18} {r['accelerator_type'] or '-':<24} "
                  f"{'/'.join(map(str, r['accelerator_counts'])) or '-':<6} {r['note']}")
    return 0


def cmd_token(args) -> int:
    from jobs import lifecycle
    outputs = _outputs(args)
    if args.token_command == "status":
        info = lifecycle.status(outputs)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"{info['secret']}")
            print(f"  current token: {info['owner'] or '?'} ({info['role'] or '?'} token,"
                  f" sha256:{info['fingerprint'] or '-'})")
            print(f"  rotation: every {info['rotation_period_days']} days, due {info['rotation_due'] or '-'}"
                  if info["rotation_period_days"] else "  rotation: no schedule on the secret")
            for v in info["versions"]:
                jobs = ", ".join(f"{j['job'].rsplit('/', 1)[-1]} ({j['state'].lower()})" for j in v["jobs"])
                print(f"  v{v['version']:<4} {v['state'].lower():<9} {v['created'] or '':<32}"
                      f"{'latest ' if v['latest'] else '':<7} {('jobs: ' + jobs) if jobs else ''}".rstrip())
            for p in info["problems"]:
                print(f"  ! {p}")
        return 0
    token = lifecycle.read_new_token(args.from_hf_login)
    result = lifecycle.set_token(outputs, token, args.model, args.revision,
                                 keep_versions_for_jobs=args.token_command == "rotate",
                                 force=getattr(args, "force", False))
    data = {"version": result.version, "fingerprint": result.fingerprint, "user": result.user, "role": result.role,
            "disabled": result.disabled, "kept_for_running_jobs": result.kept_for_jobs}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"stored {result.version} (sha256:{result.fingerprint}, {result.role} token of {result.user})")
        for name in result.disabled:
            print(f"  disabled {name} (re-enable with gcloud secrets versions enable if you must roll back)")
        for name, jobs in result.kept_for_jobs.items():
            print(f"  kept {name} enabled: used by {len(jobs)} running job(s); run `hfgate token rotate` again"
                  " when they finish, or --force")
    if result.role == "write":
        print("hfgate: warning: a write token is broader than training needs; prefer read or fine-grained",
              file=sys.stderr)
    return 0


COMMANDS = {"review": cmd_review, "mirror": cmd_mirror, "token": cmd_token, "check": cmd_check, "submit": cmd_submit, "status": cmd_status, "logs": cmd_logs,
            "cancel": cmd_cancel, "machines": cmd_machines}

if __name__ == "__main__":
    sys.exit(main())

"""hfgate: check a Hugging Face token against the Hub and launch GPU training on Vertex AI, without leaking it.

The start-up path imports nothing heavy: clients load inside the command that needs them.
"""
from __future__ import annotations

import argparse
import json
import time
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
  141 its output was closed by the reader (`hfgate machines | head`): stopped quietly
"""

EXAMPLES = """examples:
  hfgate check --env dev --team research --model google/txgemma-2b-predict
  hfgate submit --env dev --team research --model google/txgemma-2b-predict --dataset org/chat --max-steps 100 --wait
  hfgate submit ... --dry-run                                   # print the exact request, create nothing
  hfgate submit ... -- --learning_rate 2e-5                     # after --: passed to trl sft verbatim
  hfgate submit ... --replica-count 2 --accelerator-count 8     # one run on 2 nodes x 8 GPUs (world size 16)
  hfgate submit ... --scheduling SPOT --checkpoint-every 200    # preempted? Vertex restarts it; it resumes
  hfgate status JOB | hfgate logs JOB | hfgate cancel JOB
  hfgate token set --env dev --team research < token.txt        # validated first; never from argv
  hfgate token set --kind write --repo acme/txgemma-sft < write-token.txt   # the publishing token
  hfgate publish RUN_OR_JOB --env dev --team research --repo acme/txgemma-sft   # a finished run to the Hub
  hfgate check --env sandbox --model M                          # an environment without teams: no --team
environment: --outputs FILE, else $HFGATE_OUTPUTS, else outputs/<env>.json (cdktn output --outputs-file);
  in an environment with teams, --team NAME (or $HFGATE_TEAM) picks your team's contract from it
"""


def _outputs(args):
    from stacks.contract import OutputsError, load_outputs
    path = args.outputs or os.environ.get("HFGATE_OUTPUTS") or (f"outputs/{args.env}.json" if args.env else None)
    if not path:
        raise OutputsError("no outputs contract given",
                           "pass --env ENV (reads outputs/ENV.json) or --outputs FILE; produce it with"
                           " `cdktn output hfgate-ENV --outputs-file outputs/ENV.json`")
    team = getattr(args, "team", None) or os.environ.get("HFGATE_TEAM") or None
    return load_outputs(Path(path), env=args.env, team=team)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--env", help="environment name (config/<env>.toml; outputs/<env>.json)")
    common.add_argument("--outputs", help="outputs contract JSON (cdktn output / terraform output -json)")
    common.add_argument("--team", help="your team, in an environment with teams (else $HFGATE_TEAM): its token,"
                                       " identities, buckets and allowlist")
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
    sm.add_argument("--replica-count", type=int, default=1,
                    help="nodes. More than 1 adds a second worker pool and runs ONE distributed training across all"
                         " nodes and all GPUs of each (torchrun, ranks from Vertex AI's CLUSTER_SPEC); only rank 0"
                         " writes the model and logs")
    sm.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS",
                    help="save a checkpoint to the run's folder every STEPS steps (default 500, 0 for none); a job"
                         " Vertex restarts (preemption with --scheduling SPOT/FLEX_START) or the same request"
                         " submitted again resumes from the newest one")
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
    sm.add_argument("--wait", action="store_true", help="follow the job and its logs (with one live progress line"
                    " on a terminal: step/max, loss, samples/s, elapsed, ETA); exit 1 if it fails")
    sm.add_argument("--all-replicas", action="store_true", help="with --wait: every replica's lines, each prefixed"
                    " with its replica (default: the chief's, workerpool0-0, which logs the training steps)")
    sm.add_argument("trainer_args", nargs="*", help="after --: passed to trl sft verbatim")

    for name, helptext in (("status", "show a job: state, error, and its latest step, loss and ETA"),
                           ("logs", "print a job's logs (the chief's; --all-replicas: every replica's, prefixed)"),
                           ("cancel", "cancel a job")):
        c = sub.add_parser(name, parents=[common], help=helptext)
        c.add_argument("job", help="job id or full resource name")
        if name == "logs":
            c.add_argument("--all-replicas", action="store_true",
                           help="every replica's lines, prefixed [workerpool1-0] ..., in time order")
    sub.add_parser("machines", parents=[common], help="the machine/accelerator table submit validates against")

    rv = sub.add_parser("review", help="security review of the synthesized stacks or a terraform plan",
                        description="Who can reach the token (every permission path: read, IAM change,"
                        " impersonation followed transitively, writing what jobs run, reading env-delivery job"
                        " specs), who can replace it, what could not be resolved (UNKNOWN), the IAM matrix, egress,"
                        " what the environment may download (the allowlist, the proxy rules and a replay of recorded"
                        " traffic through them), data protection, findings (project policies + checkov) and a Mermaid"
                        " diagram. Writes"
                        " reports/<env>/REPORT.md, report.json and report.sarif; prints the --format one. Offline.",
                        epilog="exit codes: 0 PASS; 1 FAIL: a policy or checkov failed, a principal other than the"
                        " trainer and submitter reaches the token, something could not be resolved (UNKNOWN) and"
                        " was not accepted, jobs can reach more than the allowlist implies (an egress finding not"
                        " accepted), or recorded traffic replayed through the proxy rules was decided"
                        " otherwise than the allowlist says; 2 bad input\n\naccept file (TOML), each entry with a reason:\n"
                        "  [[unknown]]\n  address = \"google_project_iam_member.from_var\"\n  reason = \"var.role is"
                        " roles/logging.viewer in every workspace (checked)\"\n  [[reader]]\n  principal ="
                        " \"group:ml-oncall@example.com\"\n  reason = \"break-glass, approved in SEC-123\"\n"
                        "  [[egress]]\n  address = \"google_compute_router_nat.build\"\n  reason = \"serves the"
                        " build VMs' subnet only (checked)\"\n"
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
    rv.add_argument("--live", action="store_true", help="review what is deployed too: the projects' IAM (and their"
                    " folders' and organization's) and the resources the stacks own, read through Cloud Asset"
                    " Inventory; paths only the deployed state makes are named with their origin, a drift table"
                    " compares plan and deployed, and what the caller may not read is UNKNOWN (README: Reviewing"
                    " what is deployed)")

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

    pb = sub.add_parser("publish", parents=[common], help="upload a finished run to a Hub repository (private)",
                        description="Upload a run whose job SUCCEEDED (its final files: no checkpoints) to a Hub"
                        " repository in one commit, with a model card naming the base model and revision, the"
                        " dataset, the run and the job, and carrying the base model's license. The write token is"
                        " read as the publisher account (you impersonate it: `publishers` in config/<env>.toml);"
                        " the training token is never read. New repositories are private unless --public."
                        " Publishing the same run again uploads nothing. Every file's hash is checked on the Hub"
                        " afterwards.", epilog=EXIT_CODES + "\nexamples:\n  hfgate publish txgemma-sft-v2 --env dev"
                        " --team research --repo acme/txgemma-sft\n  hfgate publish 1234567890 --env sandbox --repo acme/txgemma-sft"
                        " --public --confirm-base-terms\n", formatter_class=argparse.RawDescriptionHelpFormatter)
    pb.add_argument("run", metavar="RUN_OR_JOB", help="the run's --display-name (its newest job) or a job id")
    pb.add_argument("--repo", required=True, help="target model repository, ORG/NAME (created if missing)")
    pb.add_argument("--public", action="store_true", help="create (or keep) the repository public")
    pb.add_argument("--confirm-base-terms", action="store_true",
                    help="with --public and a gated base model: you have checked that its terms allow publishing a"
                         " derivative")
    pb.add_argument("--license", dest="license_id", help="license id for the card (default: the base model's)")
    pb.add_argument("--replace", action="store_true",
                    help="delete files the repository holds that the run does not (an earlier version's, e.g. a LoRA"
                         " adapter) in the same commit; without it publish refuses and names them (exit 2)")
    pb.add_argument("--token-version", default="latest", help="write token secret version (default latest)")

    tok = sub.add_parser("token", help="store, inspect and rotate the Hugging Face token in Secret Manager",
                         description="The token never travels in argv: `set` and `rotate` read it from stdin (hidden"
                         " prompt on a terminal) or from your local Hugging Face login.",
                         epilog=EXIT_CODES + "\nexamples:\n  hfgate token set --env dev --team research --model"
                         " google/txgemma-2b-predict < token.txt\n  hfgate token set --env dev --team research"
                         " --from-hf-login\n  hfgate token status --env dev --team research\n  hfgate token rotate"
                         " --env dev --team research < new-token.txt\n",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    tsub = tok.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    for name, helptext in (("set", "validate a token against the Hub, add it as a new version, disable the old"),
                           ("rotate", "set, keeping versions that running jobs still use enabled (unless --force)")):
        t = tsub.add_parser(name, parents=[common], help=helptext, description=helptext, epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        t.add_argument("--from-hf-login", action="store_true", help="use huggingface_hub.get_token() instead of stdin")
        t.add_argument("--kind", choices=["read", "write"], default="read",
                       help="read: the training token (default); write: the publishing token (hfgate publish),"
                            " checked by its own preflight: fine-grained with write on the target preferred, a"
                            " broad write token warned about, a read token refused (exit 4)")
        t.add_argument("--repo", help="with --kind write: check the token may write to this repository (ORG/NAME)")
        t.add_argument("--model", help="also check gated access to this model before storing")
        t.add_argument("--revision", default="main")
        if name == "rotate":
            t.add_argument("--force", action="store_true", help="disable old versions even if running jobs use them")
    ts = tsub.add_parser("status", parents=[common], help="versions, owner and role, rotation due date, jobs per"
                         " version; the write token's versions too")
    ts.add_argument("--kind", choices=["read", "write"], default=None,
                    help="only one token; write: also whose it is and where it writes, read as the publisher (run"
                         " it as one of `publishers`)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="hfgate: %(levelname)s %(message)s")
    from jobs.redact import harden
    harden()
    from stacks.errors import HfgateError
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`hfgate machines | head`): stop quietly, as Unix tools do on SIGPIPE (128 + 13).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
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
    from jobs import api
    report = api.check(_outputs(args), args.model, args.revision, token_version=args.token_version)
    print(report.to_json() if args.json else report.table())
    return report.exit_code


def _show_preflight(args, report, failed: bool = False, **table_text) -> None:
    """The preflight table on stderr; under --json a failed report goes to stdout instead."""
    if args.json:
        if failed:
            print(report.to_json())
        return
    print(report.table(**table_text), file=sys.stderr)


PLAIN_PROGRESS_EVERY_S = 30.0


def _show_events(events, all_replicas: bool = False) -> str | None:
    """Render a follow: state changes as `[  12.3s] RUNNING`, log lines as `  | ...` (`  | [workerpool1-0] ...` with
    every replica). On a terminal, one live progress line stays under the log; otherwise a plain `progress:` line
    at most every 30 s. Returns the last state."""
    from jobs import api
    live = sys.stderr.isatty()
    state, shown, last_plain = None, "", 0.0

    def out(text: str) -> None:
        if live and shown:
            sys.stderr.write("\r\x1b[K")
        print(text, file=sys.stderr, flush=True)
        if live and shown:
            sys.stderr.write(shown)
            sys.stderr.flush()
    for event in events:
        if isinstance(event, api.StateChange):
            state = event.state
            out(f"[{event.elapsed_s:6.1f}s] {state.removeprefix('JOB_STATE_')}")
        elif isinstance(event, api.Progress):
            if live:
                shown = f"  > {event.line()}"
                sys.stderr.write("\r\x1b[K" + shown)
                sys.stderr.flush()
            elif time.monotonic() - last_plain >= PLAIN_PROGRESS_EVERY_S or event.step == event.max_steps:
                last_plain = time.monotonic()
                print(f"  progress: {event.line()}", file=sys.stderr, flush=True)
        else:
            out(f"  | [{event.replica or '-'}] {event.text}" if all_replicas else f"  | {event.text}")
    if live and shown:
        sys.stderr.write("\n")
    return state


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
                        token_delivery=TokenDelivery(args.token_delivery), checkpoint_every=args.checkpoint_every,
                        nonce=os.urandom(8).hex() if args.force_new else "")


def cmd_submit(args) -> int:
    from jobs import api
    outputs = _outputs(args)
    req = _train_request(args)
    try:
        sub = api.submit(outputs, req, token_version=args.token_version, dry_run=args.dry_run, backend=args.backend,
                         flavor=args.flavor, namespace=args.namespace,
                         progress=lambda line: print(f"hfgate: {line}", file=sys.stderr, flush=True))
    except api.PreflightFailed as exc:
        _show_preflight(args, exc.report, failed=True)
        return exc.exit_code
    if sub.preflight is not None:
        _show_preflight(args, sub.preflight)
    for warning in sub.warnings:
        print(f"hfgate: warning: {warning}", file=sys.stderr)
    if sub.mirrors:
        print(f"training from the mirror {sub.mirrors[0]} (verified; no token, no Hugging Face egress in the job)",
              file=sys.stderr)
    if args.dry_run:
        print(json.dumps(sub.request, indent=2))
        return 0
    if sub.backend == api.Backend.HF_JOBS.value:
        print(f"submitted Hugging Face job {sub.job} ({sub.extra['flavor']})", file=sys.stderr)
        result = {"backend": sub.backend, "job": sub.job, "state": sub.state, "flavor": sub.extra["flavor"],
                  "namespace": sub.extra["namespace"], "token_version": sub.token_version,
                  "token_fingerprint": sub.token_fingerprint}
        if args.wait:
            result["state"] = _show_events(api.follow(outputs, sub.job, backend=sub.backend,
                                                      namespace=sub.extra["namespace"],
                                                      token_version=args.token_version)) or result["state"]
        print(json.dumps(result, indent=2) if args.json else sub.job)
        return 1 if result["state"] in api.HF_TERMINAL and result["state"] != "COMPLETED" else 0
    result = {"job": sub.job, "state": sub.state, "created": sub.created, "request_id": sub.request_id,
              "token_version": sub.token_version, "token_fingerprint": sub.token_fingerprint,
              "delivery": sub.delivery}
    print(("submitted " if sub.created else "already submitted (same request id) ") + sub.job, file=sys.stderr)
    if args.wait:
        _show_events(api.follow(outputs, sub.job, all_replicas=args.all_replicas), args.all_replicas)
        final = api.status(outputs, sub.job)
        result["state"] = final.state
        if final.state != "JOB_STATE_SUCCEEDED":
            result["error"] = final.error
            print(f"hfgate: job {final.state.removeprefix('JOB_STATE_')}: {final.error}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else result["job"])
    return 0 if result["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING",
                                    "JOB_STATE_RUNNING") else 1


def cmd_review(args) -> int:
    from review.report import run
    if getattr(args, "live", False):
        from review.live import run as run_live
        report, paths = run_live(args.env, plan=Path(args.plan) if args.plan else None,
                                 out=Path(args.out) if args.out else None,
                                 accept=Path(args.accept) if args.accept else None)
    else:
        report, paths = run(args.env, plan=Path(args.plan) if args.plan else None,
                            out=Path(args.out) if args.out else None,
                            accept=Path(args.accept) if args.accept else None, checkov=not args.no_checkov)
    print(paths[args.format].read_text())
    failed = [p["id"] for p in report["policies"] if not p["passed"]]
    print(f"review {'PASS' if report['ok'] else 'FAIL'}: {paths['md']}"
          + (f" (failed: {', '.join(failed)})" if failed else "")
          + (f" (unexpected token readers: {', '.join(report['unexpected_readers'])})"
             if report["unexpected_readers"] else "")
          + (f" (UNKNOWN: {', '.join(report['unresolved'])})" if report["unresolved"] else "")
          + "".join(f" (egress: {f['address']}: {f.get('what') or f.get('why')})"
                    for f in report["egress"]["findings"] + report["egress"]["unknowns"] if not f["accepted"]),
          file=sys.stderr)
    return 0 if report["ok"] else 1


def cmd_mirror(args) -> int:
    from jobs import api
    from jobs.errors import UsageError
    if bool(args.model) == bool(args.dataset):
        raise UsageError("mirror needs exactly one of --model or --dataset", "e.g. hfgate mirror --model org/name")
    repo_id, repo_type = (args.model, "model") if args.model else (args.dataset, "dataset")
    try:
        result = api.mirror(_outputs(args), repo_id, repo_type=repo_type, revision=args.revision,
                            allow_pickle=args.allow_pickle, token_version=args.token_version,
                            on_preflight=lambda r: _show_preflight(args, r, ok_text="ready to mirror"),
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    except api.PreflightFailed as exc:
        _show_preflight(args, exc.report, failed=True, fail_text="not mirrored: nothing was uploaded")
        return exc.exit_code
    data = {"uri": result.uri, "commit": result.commit, "files": result.files, "bytes": result.bytes,
            "uploaded": result.uploaded}
    print(json.dumps(data, indent=2) if args.json else
          f"{result.uri} ({result.files} files, {result.bytes / 1e6:.1f} MB, {result.uploaded} uploaded)")
    return 0


def cmd_status(args) -> int:
    from jobs import api
    job = api.status(_outputs(args), args.job)
    info = {"job": job.job, "display_name": job.display_name, "state": job.state, "labels": job.labels,
            "error": job.error, "progress": job.progress.as_dict() if job.progress else None}
    print(json.dumps(info, indent=2) if args.json else
          f"{job.job}\n  {job.display_name}: {job.state.removeprefix('JOB_STATE_')}"
          + (f"\n  progress: {job.progress.line()}" if job.progress else "")
          + (f"\n  error: {job.error}" if job.error else ""))
    return 0


def cmd_logs(args) -> int:
    from jobs import api
    lines = api.logs(_outputs(args), args.job, all_replicas=args.all_replicas)
    print(json.dumps(lines) if args.json else "\n".join(lines))
    return 0


def cmd_cancel(args) -> int:
    from jobs import api
    api.cancel(_outputs(args), args.job)
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
    from jobs import api, lifecycle
    outputs = _outputs(args)
    if args.token_command == "status":
        info = api.token_status(outputs, args.kind)
        if args.json:
            print(json.dumps(info, indent=2))
        elif args.kind != "write":
            print(f"{info['secret']}")
            print(f"  current token: {info['owner'] or '?'} ({info['role'] or '?'} token,"
                  f" sha256:{info['fingerprint'] or '-'})")
            print(f"  rotation: every {info['rotation_period_days']} days, due {info['rotation_due'] or '-'}"
                  if info["rotation_period_days"] else "  rotation: no schedule on the secret")
            for v in info["versions"]:
                jobs = ", ".join(f"{j['job'].rsplit('/', 1)[-1]} ({j['state'].lower()})" for j in v["jobs"])
                print(f"  v{v['version']:<4} {v['state'].lower():<9} {v['created'] or '':<32} "
                      f"{'latest ' if v['latest'] else '':<7} {('jobs: ' + jobs) if jobs else ''}".rstrip())
            for p in info["problems"]:
                print(f"  ! {p}")
        if not args.json and args.kind != "read":
            w = info["write"]
            print(f"{w['secret']} (write token: hfgate publish)")
            print(f"  current token: {w['owner'] or '?'} ({w['role'] or '?'} token, sha256:{w['fingerprint'] or '-'})"
                  + (f"; {w['scope']}" if w["scope"] else ""))
            for v in w["versions"]:
                print(f"  v{v['version']:<4} {v['state'].lower():<9} {v['created'] or '':<32}"
                      f" {'latest' if v['latest'] else ''}".rstrip())
            for p in w["problems"]:
                print(f"  ! {p}")
        return 0
    from jobs.errors import UsageError
    if args.kind == "write" and args.model:
        raise UsageError("--model checks gated access for training; the write token is checked against --repo",
                         "drop --model, or pass --repo ORG/NAME")
    if args.kind == "read" and args.repo:
        raise UsageError("--repo is for the write token", "add --kind write, or drop --repo")
    if args.repo:
        from jobs.publish import check_repo_id
        check_repo_id(args.repo)
    token = lifecycle.read_new_token(args.from_hf_login)
    result = api.set_token(outputs, token, model=args.model, revision=args.revision,
                           keep_versions_for_jobs=args.token_command == "rotate", force=getattr(args, "force", False),
                           kind=args.kind, repo=args.repo)
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
        print("hfgate: warning: a write token is broader than training needs; prefer read or fine-grained"
              if args.kind == "read" else "hfgate: warning: a broad write token pushes to every repository its"
              " owner can; prefer a fine-grained token with write on the target organization or repository",
              file=sys.stderr)
    return 0


def cmd_publish(args) -> int:
    from jobs.preflight import MARK

    def preflight_rows(report):
        if not args.json:
            for c in report.checks:
                print(f"  {MARK[c.status]} {c.name}: {c.detail}" + (f"\n      fix: {c.fix}" if c.fix and
                                                                     c.status != "ok" else ""), file=sys.stderr)
    from jobs import publish as _publish
    result = _publish.publish(_outputs(args), args.run, args.repo, public=args.public,
                              confirm_base_terms=args.confirm_base_terms, license_id=args.license_id,
                              token_version=args.token_version, on_preflight=preflight_rows, replace=args.replace,
                              progress=(lambda line: print(line, file=sys.stderr, flush=True))
                              if not args.json else None,
                              show_bars=sys.stderr.isatty() and not args.json)
    data = {"ok": True, "repo": result.repo_id, "url": result.url, "commit": result.commit,
            "private": result.private, "created_repo": result.created_repo, "files": result.files,
            "bytes": result.bytes, "uploaded": result.uploaded, "run": result.run, "job": result.job,
            "base_model": result.base_model, "license": result.license, "warnings": list(result.warnings),
            "deleted": list(result.deleted), "by_another": result.by_another}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"{result.url} @ {result.commit[:12]}: {result.files} files"
              f" ({'private' if result.private else 'PUBLIC'}, license {result.license}); "
              + ("nothing new uploaded" if result.uploaded == 0 else f"{result.uploaded} changed")
              + (f", {len(result.deleted)} deleted" if result.deleted else "")
              + (" (another publish of this run committed it)" if result.by_another else ""))
        for w in result.warnings:
            print(f"hfgate: warning: {w}", file=sys.stderr)
    return 0


COMMANDS = {"publish": cmd_publish, "review": cmd_review, "mirror": cmd_mirror, "token": cmd_token, "check": cmd_check, "submit": cmd_submit, "status": cmd_status, "logs": cmd_logs,
            "cancel": cmd_cancel, "machines": cmd_machines}

if __name__ == "__main__":
    sys.exit(main())

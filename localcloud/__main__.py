"""python -m localcloud up [--state-dir DIR] [--seed FILE] [--env ENV]: start the local cloud, print and write its
endpoints, stop cleanly on Ctrl-C (or SIGTERM) leaving no processes behind. `--env local-teams` starts the
environment with two teams: each team's contract is written to <state-dir>/outputs-<team>.json (point
HFGATE_OUTPUTS at it, or pass --outputs).

python -m localcloud token-set [--hub-token NAME] [hfgate token set options]: in another terminal, store one of
the seeded Hub tokens (localcloud/seed.toml; default alice-read, the demo model's accepted user) in the running
cloud's secret as the platform admin, with `hfgate token set` itself (the preflight, then a new version). The
env file makes you the submitter, who may read the token but not add one, as in a real project."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything on free loopback ports")
    up.add_argument("--state-dir", type=Path, default=Path(".localcloud"),
                    help="where the env file, outputs contract, Hub tokens and job folders go (default .localcloud)")
    up.add_argument("--seed", type=Path, help="declarative seed (default localcloud/seed.toml)")
    up.add_argument("--plan", type=Path, help="the synthesized local stack to create (default"
                    " cdktf.out/stacks/hfgate-<env>/cdk.tf.json, synthesized first if missing)")
    up.add_argument("--env", help="the environment (default: the seed's, local); local-teams has two teams")
    ts = sub.add_parser("token-set", help="store a seeded Hub token as the platform admin (hfgate token set)",
                        description="Any other option goes to `hfgate token set`: --model M (check gated access"
                        " first), --kind write --repo ORG/NAME (the publishing token), --team T, --json.")
    ts.add_argument("--state-dir", type=Path, help="the running cloud's folder (default $HFGATE_LOCALCLOUD_STATE,"
                    " else .localcloud)")
    ts.add_argument("--hub-token", default="alice-read", help="which seeded Hub token (default alice-read; the"
                    " names are in localcloud/seed.toml)")
    args, extra = parser.parse_known_args(argv)
    if args.command == "token-set":
        return token_set(args, extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")

    from localcloud.cloud import LocalCloud

    args.state_dir.mkdir(parents=True, exist_ok=True)
    cloud = LocalCloud(args.seed, args.state_dir, plan=args.plan, env=args.env).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    env_file = args.state_dir / "localcloud.env"
    print(f"local cloud up in {cloud.startup_s:.1f}s (project {cloud.project_id}, region {cloud.region})")
    for key, value in read_env_file(env_file).items():
        print(f"  {key}={value}")
    for team in (t for t in cloud.team_outputs if t):
        print(f"  team {team}: HFGATE_OUTPUTS={cloud.state_dir / f'outputs-{team}.json'}")
    print(f"endpoints written to {env_file}: `source {env_file}` to use them (as the submitter); store a token as"
          " the platform admin with `python -m localcloud token-set --model hfgate-demo/tiny-gated-lm`; Ctrl-C"
          " stops everything", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
        print("local cloud stopped", flush=True)
    return 0


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=VALUE` lines of an env file the local cloud wrote."""
    import shlex
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = shlex.split(line)[1].partition("=")
            values[name] = value
    return values


def token_set(args, hfgate_args: list[str]) -> int:
    import json
    import os
    import subprocess
    state = args.state_dir or Path(os.environ.get("HFGATE_LOCALCLOUD_STATE") or ".localcloud")
    admin_env, tokens_file = state / "localcloud-admin.env", state / "hub-tokens.json"
    if not admin_env.exists() or not tokens_file.exists():
        print(f"localcloud: error: no local cloud in {state.resolve()}\n  fix: start one with `python -m localcloud"
              " up` (in the folder you run this from), or pass --state-dir", file=sys.stderr)
        return 2
    tokens = json.loads(tokens_file.read_text())
    if args.hub_token not in tokens:
        print(f"localcloud: error: no seeded Hub token {args.hub_token!r}\n  fix: use one of {', '.join(tokens)}",
              file=sys.stderr)
        return 2
    env = {**os.environ, **read_env_file(admin_env)}
    return subprocess.run([sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())", "token",
                           "set", *hfgate_args], input=tokens[args.hub_token], text=True, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())

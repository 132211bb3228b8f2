"""python -m localcloud up [--state-dir DIR] [--seed FILE] [--env ENV]: start the local cloud, print and write its
endpoints, stop cleanly on Ctrl-C (or SIGTERM) leaving no processes behind. `--env local-teams` starts the
environment with two teams: each team's contract is written to <state-dir>/outputs-<team>.json (point
HFGATE_OUTPUTS at it, or pass --outputs)."""
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
    args = parser.parse_args(argv)

    from localcloud.cloud import LocalCloud

    args.state_dir.mkdir(parents=True, exist_ok=True)
    cloud = LocalCloud(args.seed, args.state_dir, plan=args.plan, env=args.env).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    env_file = args.state_dir / "localcloud.env"
    print(f"local cloud up in {cloud.startup_s:.1f}s (project {cloud.project_id}, region {cloud.region})")
    for key, value in cloud.env().items():
        print(f"  {key}={value}")
    for team in (t for t in cloud.team_outputs if t):
        print(f"  team {team}: HFGATE_OUTPUTS={args.state_dir / f'outputs-{team}.json'}")
    print(f"endpoints written to {env_file}: `source {env_file}` to use them; Ctrl-C stops everything", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
        print("local cloud stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

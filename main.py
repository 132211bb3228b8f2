"""cdktn entry point (cdktf.json: `python main.py`): wiring only."""
import os
import sys

from stacks.app import build_app
from stacks.config import known_envs
from stacks.errors import HfgateError

if __name__ == "__main__":
    envs = os.environ.get("HFGATE_ENVS", "").split(",") if os.environ.get("HFGATE_ENVS") else known_envs()
    try:
        app = build_app(envs)
    except HfgateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    app.synth()

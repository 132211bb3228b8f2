"""What `make deploy/diff/destroy/output` need before they start: Terraform or OpenTofu >= 1.11 (write-only secret
arguments), and the pinned CDK Terrain CLI that `make setup` installs from package-lock.json.

    python -m stacks.toolchain          # prints the binary and version it found, or why not (exit 2) and the fix

cdktn runs `terraform` unless TERRAFORM_BINARY_NAME names another binary (for OpenTofu: TERRAFORM_BINARY_NAME=tofu).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from stacks.errors import EXIT_USAGE, UsageError

MINIMUM = (1, 11)
ROOT = Path(__file__).resolve().parent.parent
INSTALL = ("install Terraform >= 1.11 (https://developer.hashicorp.com/terraform/install) or OpenTofu >= 1.11"
           " (https://opentofu.org/docs/intro/install/, then export TERRAFORM_BINARY_NAME=tofu), and run the make"
           " target again")


def terraform() -> tuple[str, tuple[int, int, int]]:
    """(path, version) of the binary cdktn will run, or UsageError with how to install one."""
    name = os.environ.get("TERRAFORM_BINARY_NAME") or "terraform"
    path = shutil.which(name) or (None if os.environ.get("TERRAFORM_BINARY_NAME") else shutil.which("tofu"))
    if path is None:
        raise UsageError(f"neither {name} nor tofu is on PATH: make deploy, diff, destroy and output run it", INSTALL)
    try:
        proc = subprocess.run([path, "version", "-json"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CHECKPOINT_DISABLE": "1"})
        text = json.loads(proc.stdout).get("terraform_version", "")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        text = ""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise UsageError(f"{path} did not report a version (`{path} version -json`)", INSTALL)
    version = tuple(int(x) for x in m.groups())
    if version[:2] < MINIMUM:
        raise UsageError(f"{path} is {text}; the stacks need >= 1.11 (write-only secret arguments)", INSTALL)
    if os.path.basename(path) == "tofu" and not os.environ.get("TERRAFORM_BINARY_NAME"):
        raise UsageError(f"found OpenTofu at {path} but not terraform", "export TERRAFORM_BINARY_NAME=tofu and run"
                         " the make target again (cdktn runs `terraform` otherwise)")
    return path, version


def cdktn() -> Path:
    cli = ROOT / "node_modules" / ".bin" / "cdktn"
    if not cli.exists():
        raise UsageError("the CDK Terrain CLI is not installed", "run `make setup` (it runs `npm ci` from"
                         " package-lock.json with the Node from PyPI)")
    return cli


def main() -> int:
    try:
        path, version = terraform()
        cli = cdktn()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{os.path.basename(path)} {'.'.join(map(str, version))} at {path}; cdktn at {cli.relative_to(ROOT)}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m stacks.summary [OUTDIR]`: what was synthesized, per stack, for people (and `--json` for scripts)."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def _shown(value):
    return "(known after apply)" if isinstance(value, str) and "${" in value else value


def summarize(outdir: Path) -> dict:
    stacks = {}
    for tf in sorted(outdir.glob("stacks/*/cdk.tf.json")):
        data = json.loads(tf.read_text())
        counts = Counter({rtype: len(items) for rtype, items in data.get("resource", {}).items()})
        outputs = {k: _shown(v["value"]) for k, v in data.get("output", {}).items()}
        stacks[tf.parent.name] = {"file": str(tf), "resources": sum(counts.values()), "by_type": dict(counts),
                                  "outputs": outputs}
    return stacks


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    outdir = Path(args[0] if args else "cdktf.out")
    stacks = summarize(outdir)
    if not stacks:
        print(f"nothing synthesized in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(stacks, indent=2, sort_keys=True))
        return 0
    for name, info in stacks.items():
        out = info["outputs"]
        enforced = "enforced (VPC-SC perimeter)" if out.get("egress_enforced") else "advisory (no perimeter)"
        egress = "uncontrolled (Google-managed)" if out.get("egress_mode") == "open" else \
            f"Hugging Face hosts only via {out.get('proxy_url')}, {enforced}"
        print(f"{name}: {info['resources']} resources -> {info['file']}")
        print(f"  token secret   {out.get('token_secret')} (container only; value set with `hfgate token set`)")
        print("  identities     trainer + submitter; secret readable by those two only")
        print(f"  buckets        {out.get('staging_bucket')}, {out.get('artifacts_bucket')}, {out.get('mirror_bucket')}")
        print(f"  egress         {out.get('egress_mode')}: {egress}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

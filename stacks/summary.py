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


def apply_waves(data: dict) -> list[list[str]]:
    """The order a first apply creates resources in: waves of resource types, each wave needing only earlier ones
    (from explicit depends_on and `${type.name...}` references, as Terraform's graph does)."""
    import re
    nodes = {f"{t}.{n}": v for t, by in (data.get("resource") or {}).items() for n, v in by.items()}
    deps = {}
    for addr, values in nodes.items():
        text = json.dumps({k: v for k, v in values.items() if k != "//"})
        refs = set(re.findall(r"\b(google[a-z0-9_-]*\.[A-Za-z0-9_-]+)(?=[.\"}\]])", text))
        deps[addr] = {r for r in refs if r in nodes and r != addr}
    wave_of: dict[str, int] = {}
    while len(wave_of) < len(nodes):
        progressed = False
        for addr in nodes:
            if addr not in wave_of and all(d in wave_of for d in deps[addr]):
                wave_of[addr] = max((wave_of[d] + 1 for d in deps[addr]), default=0)
                progressed = True
        if not progressed:     # a cycle Terraform would refuse too: shown as one last wave
            for addr in nodes:
                wave_of.setdefault(addr, max(wave_of.values(), default=0) + 1)
    waves: list[list[str]] = [[] for _ in range(max(wave_of.values(), default=-1) + 1)]
    for addr, w in wave_of.items():
        waves[w].append(addr.split(".")[0])
    return [[f"{t} x{c}" if c > 1 else t for t, c in sorted(Counter(w).items())] for w in waves]


def perimeter(data: dict) -> dict | None:
    for v in ((data.get("resource") or {}).get("google_access_context_manager_service_perimeter") or {}).values():
        part = "spec" if v.get("use_explicit_dry_run_spec") else "status"
        cfg = v.get(part) or {}
        policies = cfg.get("ingress_policies") or []
        return {"mode": "dry-run (logged, not enforced)" if part == "spec" else "enforced",
                "restricted": cfg.get("restricted_services", []),
                "ingress": [i for p in policies for i in (p.get("ingress_from") or {}).get("identities", [])]}
    return None


def main(argv: list[str]) -> int:
    if "--order" in argv:
        outdir = Path(next((a for a in argv if not a.startswith("--")), "cdktf.out"))
        for tf in sorted(outdir.glob("stacks/*/cdk.tf.json")):
            data = json.loads(tf.read_text())
            print(f"{tf.parent.name}: first apply, in order")
            for i, wave in enumerate(apply_waves(data), 1):
                print(f"  {i}. {', '.join(wave)}")
            per = perimeter(data)
            if per:
                print(f"  perimeter {per['mode']}: {', '.join(per['restricted'])}; lets in: {', '.join(per['ingress'])}")
        return 0
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
        print(f"{name}: {info['resources']} resources -> {info['file']}")
        teams = {k.removeprefix("team_"): v for k, v in info["outputs"].items()
                 if k.startswith("team_") and isinstance(v, dict)}
        for team, out in (teams or {"": info["outputs"]}).items():
            enforced = "enforced (VPC-SC perimeter)" if out.get("egress_enforced") else "advisory (no perimeter)"
            egress = "uncontrolled (Google-managed)" if out.get("egress_mode") == "open" else \
                f"Hugging Face hosts only via {out.get('proxy_url')}, {enforced}"
            show = {k: _shown(v) for k, v in out.items()}
            pad = "    " if team else "  "
            if team:
                print(f"  team {team} (project {show.get('project_id')}, a Shared VPC service project of"
                      f" {show.get('host_project_id')}): allowlist"
                      f" {', '.join(out.get('allowed_models') or []) or 'any model'};"
                      f" {', '.join(out.get('allowed_datasets') or []) or 'any dataset'}")
            print(f"{pad}token secret   {show.get('token_secret')} (container only; value set with"
                  f" `hfgate token set{' --team ' + team if team else ''}`)")
            print(f"{pad}identities     trainer + submitter read the token; the publisher alone reads the write token")
            print(f"{pad}buckets        {show.get('staging_bucket')}, {show.get('artifacts_bucket')},"
                  f" {show.get('mirror_bucket')}")
            print(f"{pad}egress         {out.get('egress_mode')}: {egress}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

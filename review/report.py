"""Security review of a stack, offline, for reviewers: who can read the token, the IAM matrix, egress, data
protection, findings (project policies + checkov) and a Mermaid diagram. Markdown, JSON and SARIF.

Input is the synthesized `cdk.tf.json` or a `terraform show -json` plan (see review.plan): same report.
The verdict fails closed: an unexpected principal with any path to the token (review.graph), a failed policy, a
checkov failure, or anything the review could not resolve (UNKNOWN) fails it, unless the reviewer accepts that
item explicitly in an accept file (see `load_accepts`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from review.graph import token_access, write_token_access
from review.plan import Plan
from review.policies import POLICIES, PRIMITIVE, PUBLIC, egress_mode, firewall_rules, grants, is_default_sa, trainer_member
from stacks.errors import UsageError

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


EXPECTED_PATHS = {"trainer": ("reads", "writes-checkpoints"),
                  "submitter": ("reads", "impersonates", "reads-env-jobs", "writes-job-inputs")}


def load_accepts(path: Path | None) -> dict:
    """The reviewer's explicit acceptances (TOML): `[[unknown]] address = "...", reason = "..."` for an UNKNOWN the
    reviewer has checked by hand, `[[reader]] principal = "...", reason = "..."` for a principal allowed to reach
    the token, `[[egress]] address = "...", reason = "..."` for an egress finding or UNKNOWN of the egress model
    (review.egress_model) the reviewer accepts. Every entry needs a reason; the report lists each acceptance next to
    what it accepts."""
    if path is None:
        return {"unknown": [], "reader": [], "egress": []}
    import tomllib
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"accept file {path} does not exist", "pass the path of your accept file, or drop --accept")\
            from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"accept file {path} is not valid TOML ({exc})", "fix the file; see `hfgate review --help`")\
            from None
    out: dict = {"unknown": [], "reader": [], "egress": []}
    for kind, key in (("unknown", "address"), ("reader", "principal"), ("egress", "address")):
        for entry in data.get(kind, []):
            if not isinstance(entry, dict) or not entry.get(key) or not str(entry.get("reason", "")).strip():
                raise UsageError(f"accept file {path}: every [[{kind}]] needs {key} and a reason",
                                 f'e.g. [[{kind}]]\n{key} = "..."\nreason = "checked by hand: ..."')
            out[kind].append({key: entry[key], "reason": entry["reason"]})
    unknown_keys = set(data) - {"unknown", "reader", "egress"}
    if unknown_keys:
        raise UsageError(f"accept file {path}: unknown sections {sorted(unknown_keys)}",
                         "only [[unknown]], [[reader]] and [[egress]] entries are read")
    return out


def iam_matrix(plan: Plan) -> list[dict]:
    keys = {plan.resolved(r).get("service_account_id", "") for r in plan.of_type("google_service_account_key")}
    rows = []
    for g in grants(plan):
        flags = []
        if g.role in PRIMITIVE:
            flags.append("primitive role")
        if g.member in PUBLIC:
            flags.append("public member")
        if is_default_sa(g.member):
            flags.append("default compute account")
        if any(g.member.endswith(k.rsplit("/", 1)[-1]) for k in keys if k):
            flags.append("has a key")
        rows.append({"principal": g.member, "resource": g.resource, "role": g.role, "flags": flags,
                     "address": g.address})
    for k in plan.of_type("google_service_account_key"):
        rows.append({"principal": plan.resolved(k).get("service_account_id", "?"), "resource": "(key)",
                     "role": "service account key", "flags": ["service account key"], "address": k.address})
    return sorted(rows, key=lambda r: (r["principal"], r["resource"], r["role"]))


def egress(plan: Plan, accepts: list[dict] | None = None, model=None) -> dict:
    """The egress section: what jobs can reach, computed by review.egress_model (this only renders it), and the
    firewall policy's rules as planned."""
    from review import egress_model
    computed = (model or egress_model.build(plan)).to_json(accepts)
    mode = egress_mode(plan)
    hosts = sorted({h for r in plan.of_type("google_network_security_url_lists") for h in r.values.get("values", [])})
    rules = sorted(firewall_rules(plan, "google_compute_network_firewall_policy_rule", "EGRESS"),
                   key=lambda v: int(v["priority"]) if str(v.get("priority", "")).isdigit() else 0)
    last = rules[-1] if rules else None
    default = (f"{last['action']} {','.join((last.get('match') or {}).get('dest_ip_ranges', []))}"
               f" (priority {last.get('priority')})") if last else "allow (no egress firewall policy)"
    nats = [plan.resolved(r) for r in plan.of_type("google_compute_router_nat")]
    return {
        **computed,
        "mode": mode, "allowed_hosts": hosts if mode == "proxy" else ["(any: open mode)"],
        "enforcement": (f"enforced (VPC Service Controls perimeter: {computed['perimeter']})" if computed["enforced"]
                        else f"advisory (firewall + proxy; perimeter: {computed['perimeter']})" if mode == "proxy"
                        else "none (open)"),
        "firewall_default": default,
        "rules": [{"priority": r.get("priority"), "action": r.get("action"), "rule": r.get("rule_name"),
                   "dest": (r.get("match") or {}).get("dest_ip_ranges", [])} for r in rules],
        "nat_logging": [f"{n.get('name')}: {'on' if (n.get('log_config') or {}).get('enable') else 'off'}"
                        f" ({(n.get('log_config') or {}).get('filter', '-')})" for n in nats] or
                       (["the Secure Web Proxy's own Cloud NAT (made by the first proxy in the network and region;"
                         " its logging is set on that NAT)"] if plan.of_type("google_network_services_gateway")
                        else ["(no Cloud NAT)"]),
    }


def allowlist(plan: Plan, source_ip: str = "", foreign: tuple = ((), ())) -> dict:
    """What the environment may download, the proxy rules as planned, and the recorded traffic (review.egress)
    replayed through them with a real CEL engine. Fails closed: a replayed request decided otherwise than
    expected, or one the engine could not decide (UNKNOWN), fails the review. For a team: the traffic comes from
    `source_ip` (in the team's subnet), and the other teams' repositories (`foreign`) must be denied."""
    import dataclasses
    from review.egress import ProxyPolicy, Request, decision_json, load_recording, probes, replay
    models = tuple(plan.output("allowed_models") or ())
    datasets = tuple(plan.output("allowed_datasets") or ())
    mode = egress_mode(plan)
    out: dict = {"models": list(models), "datasets": list(datasets), "rules": [], "replay": [], "ok": True}
    if not models and not datasets:
        out["summary"] = ("none: jobs may download any repository from the Hugging Face download hosts (methods"
                          " and hosts: the egress section); set allow_models / allow_datasets in config/<env>.toml")
        return out
    if mode != "proxy":
        out["summary"] = ("checked at submit only (the preflight refuses anything else, exit 4); egress is open, so"
                          " code in the job can still reach any repository")
        return out
    policy = ProxyPolicy.from_plan(plan)
    out["inspection"] = policy.inspection
    out["rules"] = [{"priority": r.priority, "name": r.name, "action": r.action, "session": r.session_matcher,
                     "application": r.application_matcher, "tls_inspection": r.tls_inspection} for r in policy.rules]
    traffic = probes(models, datasets, load_recording())
    from stacks.facts import split_allow_entry
    for kind, entries in (("model", foreign[0]), ("dataset", foreign[1])):
        for entry in entries:
            if entry in (models if kind == "model" else datasets):
                continue
            repo, _ = split_allow_entry(entry)
            api = f"/api/{kind}s/{repo}"
            resolve = f"/{repo}/resolve/main/config.json" if kind == "model" else \
                f"/datasets/{repo}/resolve/main/README.md"
            traffic += [(Request("huggingface.co", "GET", api, note="another team's repository"), "deny"),
                        (Request("huggingface.co", "GET", resolve, note="another team's repository"), "deny")]
    if not source_ip:       # the jobs' own range: the proxy allows downloads from it only
        import ipaddress
        from review.plan import team_source_range
        cidr = team_source_range(plan)
        source_ip = str(next(ipaddress.ip_network(cidr, strict=False).hosts())) if cidr else ""
    if source_ip:
        out["source_ip"] = source_ip
        traffic = [(dataclasses.replace(r, source_ip=source_ip), e) for r, e in traffic]
    decisions = replay(policy, traffic)
    out["replay"] = [decision_json(d) for d in decisions]
    out["ok"] = bool(decisions) and all(d.as_expected for d in decisions)
    bad = sum(not d.as_expected for d in decisions)
    out["summary"] = (f"enforced by the proxy with TLS inspection: {len(decisions)} recorded requests replayed"
                      f" (cel-python), {bad} not as expected" if policy.inspection else
                      "the proxy has no TLS inspection policy: it cannot see paths, so the rules cannot hold")
    if not policy.inspection:
        out["ok"] = False
    return out


def _blocks(v: dict) -> dict:
    """Nested blocks as dicts (a block Terraform knows only after apply arrives as a reference string or a list)."""
    out = {}
    for k, x in v.items():
        if isinstance(x, list) and len(x) == 1 and isinstance(x[0], dict):
            x = x[0]
        out[k] = x if not isinstance(x, str) or k not in ("replication", "rotation", "versioning", "soft_delete_policy",
                                                          "encryption", "logging", "log_config", "match") else {}
    return out


def data_protection(plan: Plan) -> dict:
    secrets = []
    for r in plan.of_type("google_secret_manager_secret"):
        v = _blocks(plan.resolved(r))
        rep = v.get("replication") or {}
        locations = [x.get("location") for x in (rep.get("user_managed") or {}).get("replicas", [])]
        cmek = [x.get("customer_managed_encryption") for x in (rep.get("user_managed") or {}).get("replicas", [])
                if x.get("customer_managed_encryption")]
        secrets.append({"secret": v.get("secret_id"), "replication": ", ".join(locations) or "automatic",
                        "cmek": bool(cmek), "rotation": (v.get("rotation") or {}).get("rotation_period"),
                        "deletion_protection": v.get("deletion_protection", False)})
    versions = [{"address": r.address, "plain_secret_data": r.values.get("secret_data") not in (None, ""),
                 "write_only": "secret_data_wo" in r.values}
                for r in plan.of_type("google_secret_manager_secret_version")]
    logged = {plan.resolved(r).get("name"): bool(r.values.get("logging")) for r in plan.of_type("google_storage_bucket")}
    buckets = []
    for r in plan.of_type("google_storage_bucket"):
        v = _blocks(plan.resolved(r))
        buckets.append({"bucket": v.get("name"), "public_access_prevention": v.get("public_access_prevention"),
                        "uniform_access": v.get("uniform_bucket_level_access") is True,
                        "versioning": bool((v.get("versioning") or {}).get("enabled")),
                        "soft_delete": (v.get("soft_delete_policy") or {}).get("retention_duration_seconds"),
                        "logging": logged.get(v.get("name")), "cmek": bool(v.get("encryption"))})
    return {"token_in_state": any(x["plain_secret_data"] for x in versions), "secrets": secrets,
            "versions": versions, "buckets": buckets}


def checkov_env() -> dict[str, str]:
    """checkov's environment for an offline review: no check for a newer release (it asks pypi.org otherwise, on
    the first run on a machine); `skip-download` in .checkov.yaml keeps it from fetching policies."""
    return {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}


def run_checkov(path: Path, checkov: str | None = None, plan_json: bool = False) -> dict:
    """checkov, offline with the repo's .checkov.yaml: on the synthesized stack's folder, or on a plan JSON file."""
    root = Path(__file__).resolve().parent.parent
    exe = checkov or os.environ.get("CHECKOV") or (str(root / ".venv-checkov/bin/checkov")
                                                  if (root / ".venv-checkov/bin/checkov").exists()
                                                  else shutil.which("checkov"))
    if not exe:
        return {"ran": False, "why": "checkov not installed (make setup installs it in .venv-checkov)"}
    target = ["-f", str(path), "--framework", "terraform_plan"] if plan_json else \
        ["-d", str(path), "--framework", "terraform_json"]
    proc = subprocess.run([exe, *target, "-o", "json",
                           "--config-file", str(root / ".checkov.yaml"), "--quiet"],
                          capture_output=True, text=True, timeout=600, env=checkov_env())
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"ran": False, "error": True, "why": f"checkov failed: {proc.stderr.strip()[-300:]}"}
    data = data[0] if isinstance(data, list) else data
    summary = data.get("summary", {})
    # checkov logs a template it cannot parse and goes on with nothing to check: that is not a pass.
    if "Failed to parse" in proc.stderr or summary.get("passed", 0) + summary.get("failed", 0) == 0:
        why = next((ln for ln in proc.stderr.splitlines() if "Failed to parse" in ln), "it checked nothing")
        return {"ran": False, "error": True, "why": f"checkov checked nothing: {why.strip()[-300:]}"}
    failed = [{"id": c["check_id"], "resource": c["resource"], "name": c["check_name"]}
              for c in data.get("results", {}).get("failed_checks", [])]
    return {"ran": True, "passed": summary.get("passed", 0), "failed": summary.get("failed", 0),
            "skipped": summary.get("skipped", 0), "failed_checks": failed}


def evaluate(plan: Plan) -> list[dict]:
    results = []
    for p in POLICIES:
        violations = p.check(plan)
        results.append({"id": p.id, "title": p.title, "severity": p.severity, "rationale": p.rationale,
                        "fix": p.fix, "passed": not violations,
                        "violations": [{"address": a, "detail": d} for a, d in violations]})
    return results


def review(plan: Plan, checkov: dict | None = None, accepts: dict | None = None) -> dict:
    """The review of a plan; with teams, of each team's view of it, and the isolation matrix between them."""
    from review.plan import team_views
    views = team_views(plan)
    if list(views) == [""]:
        return _review_one(plan, checkov, accepts)
    return _review_teams(plan, views, checkov, accepts)


def _review_one(plan: Plan, checkov: dict | None = None, accepts: dict | None = None,
                teams: bool = False, source_ip: str = "", foreign: tuple = ((), ()), egress_model=None) -> dict:
    accepts = accepts or {"unknown": [], "reader": []}
    trainer = trainer_member(plan)
    submitter = plan.output("submitter_email")
    # What each expected principal may do, and nothing more: the trainer reads; the submitter reads, acts as the
    # trainer, stages job inputs and reads job specs. Anyone else, or any other path (changing IAM, replacing the
    # token), is unexpected.
    allowed = {m: kinds for m, kinds in ((trainer, EXPECTED_PATHS["trainer"]),
                                         (f"serviceAccount:{submitter}" if submitter else None,
                                          EXPECTED_PATHS["submitter"])) if m}
    # A team's people and CI act as its submitter (config `submitters`): that, and only that, is expected of them.
    for m in plan.output("submitters") or []:
        if isinstance(m, str) and m != trainer:
            allowed.setdefault(m, ("impersonates",))
    expected = set(allowed)
    # With teams, hfgate refuses --token-delivery env (Vertex AI has no per-job IAM: every team's submitter could
    # read every spec), so reading job specs is not a path to a token there (ENV_JOBS_NOTE in the report).
    access = token_access(plan, env_jobs=not teams)
    readers, writers = access["readers"], access["writers"]
    for row in readers + writers:
        row["expected"] = row["kind"] in allowed.get(row["principal"], ())
    # The write token (publishing): the publisher reads it; the configured publishers may act as the publisher.
    # Anyone else, any other path, and the trainer whatever the configuration says, is unexpected.
    publisher = plan.output("publisher_email")
    publishers = [m for m in (plan.output("publishers") or []) if isinstance(m, str)]
    w_allowed: dict[str, tuple[str, ...]] = {f"serviceAccount:{publisher}": ("reads",)} if publisher else {}
    for m in publishers:
        if m != trainer:
            w_allowed[m] = ("impersonates",)
    if submitter and f"serviceAccount:{submitter}" in publishers:   # who may act as the submitter publishes too
        for m in plan.output("submitters") or []:
            if isinstance(m, str) and m != trainer:
                w_allowed.setdefault(m, ("impersonates",))
    waccess = write_token_access(plan)
    for row in waccess["readers"] + waccess["writers"]:
        row["expected"] = row["kind"] in w_allowed.get(row["principal"], ())
    w_unexpected = sorted({r["principal"] for r in waccess["readers"] + waccess["writers"] if not r["expected"]})
    seen = {(u["address"], u["field"]) for u in access["unknowns"]}
    access["unknowns"] += [u for u in waccess["unknowns"] if (u["address"], u["field"]) not in seen]
    accepted_readers = {a["principal"]: a["reason"] for a in accepts["reader"]}
    accepted_unknowns = {a["address"]: a["reason"] for a in accepts["unknown"]}
    reaching = {r["principal"] for r in readers + writers}
    unexpected = sorted({r["principal"] for r in readers + writers if not r["expected"]} - set(accepted_readers))
    unknowns = [u | {"accepted": accepted_unknowns.get(u["address"]) or u.get("accepted")} for u in access["unknowns"]]
    policies = evaluate(plan)
    report = {
        "stack": plan.stack, "source": plan.source,
        "environment": plan.output("env"), "project": plan.output("project_id") or plan.default_project(),
        "token_secret": plan.output("token_secret"),
        "token_readers": readers, "token_writers": writers, "expected_readers": sorted(expected),
        "unexpected_readers": unexpected,
        "write_token": {"secret": plan.output("write_token_secret") or "", "readers": waccess["readers"],
                        "writers": waccess["writers"], "expected_readers": sorted(w_allowed),
                        "unexpected_readers": w_unexpected},
        "accepted_readers": [{"principal": k, "reason": v} for k, v in sorted(accepted_readers.items())
                             if k in reaching],
        "unknowns": unknowns, "unresolved": sorted({u["address"] for u in unknowns if not u["accepted"]}),
        "references": access.get("references", {"paths": [], "unknowns": [], "inert": []}),
        "iam": iam_matrix(plan), "egress": egress(plan, accepts.get("egress"), egress_model), "allowlist": allowlist(plan, source_ip, foreign),
        "data_protection": data_protection(plan),
        "policies": policies, "checkov": checkov or {"ran": False, "why": "not requested"},
    }
    report["ok"] = (all(p["passed"] for p in policies) and not unexpected and not report["unresolved"]
                    and not w_unexpected
                    and not report["checkov"].get("error")
                    and (not report["checkov"].get("ran") or report["checkov"]["failed"] == 0)
                    and report["allowlist"]["ok"] and report["egress"]["ok"])
    report["diagram"] = mermaid(plan, report)
    return report


ENV_JOBS_NOTE = ("Vertex AI has no per-job IAM: every team's submitter may read every job's spec. hfgate refuses"
                 " --token-delivery env in an environment with teams, so no job spec holds a token")


def _team_members(view: Plan) -> dict[str, str]:
    """member -> its role in the team: the team's three identities, its submitters and its publishers."""
    out = {}
    for role, field in (("trainer", "trainer_email"), ("submitter", "submitter_email"),
                        ("publisher", "publisher_email")):
        email = view.output(field)
        if email:
            out[f"serviceAccount:{email}"] = role
    for m in view.output("submitters") or []:
        out.setdefault(m, "submitters")
    for m in view.output("publishers") or []:
        out.setdefault(m, "publishers")
    return out


def _review_teams(plan: Plan, views: dict[str, Plan], checkov: dict | None, accepts: dict | None) -> dict:
    """Each team's view reviewed on its own (its token, write token, buckets and allowlist against its own
    expectations), then the isolation matrix: every principal that reaches any team's token, write token or
    job-input buckets, by team. A path from one team's principal to another team's resources fails the review and
    names both teams; a principal of no team reaching a team's resources fails that team's review."""
    members = {name: _team_members(view) for name, view in views.items()}
    owner = {m: (name, role) for name, ms in members.items() for m, role in ms.items()}
    from review.plan import team_source_range
    import ipaddress

    def source(view: Plan) -> str:
        cidr = team_source_range(view)
        return str(next(ipaddress.ip_network(cidr).hosts())) if cidr else "(unknown)"

    def foreign(name: str) -> tuple:
        return (tuple(m for n, v in views.items() if n != name for m in v.output("allowed_models") or ()),
                tuple(d for n, v in views.items() if n != name for d in v.output("allowed_datasets") or ()))
    from review import egress_model
    model = egress_model.build(plan)      # one answer for the whole network: every team's range at once
    reports = {name: _review_one(view, checkov, accepts, teams=True, source_ip=source(view), foreign=foreign(name),
                                 egress_model=model)
               for name, view in views.items()}
    matrix: dict[str, dict[str, set]] = {}
    cross = []
    for name, rep in reports.items():
        rows = [(r, False) for r in rep["token_readers"] + rep["token_writers"]] + \
            [(r, True) for r in rep["write_token"]["readers"] + rep["write_token"]["writers"]]
        for row, on_write in rows:
            target = "write token" if on_write else \
                {"writes-job-inputs": "job inputs", "writes-checkpoints": "checkpoints"}.get(row["kind"], "token")
            matrix.setdefault(row["principal"], {}).setdefault(name, set()).add(f"{target}: {row['kind']}")
            theirs = owner.get(row["principal"])
            if theirs and theirs[0] != name:
                row["expected"] = False
                cross.append({"from_team": theirs[0], "principal": row["principal"], "as": theirs[1],
                              "to_team": name, "what": target, "kind": row["kind"], "how": row["how"],
                              "address": row["address"]})
        for key in ("unexpected_readers",):
            rep[key] = sorted({r["principal"] for r in rep["token_readers"] + rep["token_writers"]
                               if not r["expected"]} - {a["principal"] for a in rep["accepted_readers"]})
        rep["write_token"]["unexpected_readers"] = sorted({r["principal"] for r in rep["write_token"]["readers"] +
                                                           rep["write_token"]["writers"] if not r["expected"]})
        rep["ok"] = (all(p["passed"] for p in rep["policies"]) and not rep["unexpected_readers"]
                     and not rep["unresolved"] and not rep["write_token"]["unexpected_readers"]
                     and not rep["checkov"].get("error")
                     and (not rep["checkov"].get("ran") or rep["checkov"]["failed"] == 0)
                     and rep["allowlist"]["ok"] and rep["egress"]["ok"])
    first = reports[next(iter(reports))]
    combined = dict(first)        # plan-wide sections (policies, IAM, egress, data protection, checkov) are shared
    combined["view"] = next(iter(reports))
    combined["teams"] = {name: {k: rep[k] for k in ("token_secret", "token_readers", "token_writers",
                                                     "expected_readers", "unexpected_readers", "write_token",
                                                     "allowlist", "ok", "unresolved")}
                         for name, rep in reports.items()}
    combined["isolation"] = {
        "teams": list(views),
        "rows": [{"principal": m, "team": owner.get(m, ("(none)", ""))[0], "as": owner.get(m, ("", ""))[1],
                  "reaches": {t: sorted(v) for t, v in sorted(by.items())}} for m, by in sorted(matrix.items())],
        "cross_team": cross, "note": ENV_JOBS_NOTE}
    # Every permission on every team's resources (review.isolation): buckets, secrets, accounts, jobs, logs,
    # subnets, repositories; and the teams' source ranges, by CIDR arithmetic.
    from review.isolation import matrix as access_matrix
    access = access_matrix(plan, views)
    combined["isolation"]["access"] = access
    isolated = not (access["cross_team"] or access["no_team"] or access["unknown"] or access["ranges"])
    combined["unexpected_readers"] = sorted({p for r in reports.values() for p in r["unexpected_readers"]})
    combined["write_token"] = dict(first["write_token"], unexpected_readers=sorted(
        {p for r in reports.values() for p in r["write_token"]["unexpected_readers"]}))
    combined["unresolved"] = sorted({u for r in reports.values() for u in r["unresolved"]})
    combined["allowlist"] = dict(first["allowlist"], ok=all(r["allowlist"]["ok"] for r in reports.values()))
    combined["ok"] = all(r["ok"] for r in reports.values()) and not cross and isolated
    return combined


def _isolation_markdown(access: dict | None) -> list[str]:
    """Every permission on every team's resources (review.isolation), and the source ranges."""
    if not access:
        return []
    from review.isolation import describe
    teams = ", ".join(f"`{n}` (project `{t['project']}`, source range {t['source_range'] or '-'})"
                      for n, t in access["teams"].items())
    out = ["### Who holds what on each team's resources", "",
           f"Teams: {teams}; host project `{access['host_project']}`. Every grant on a team's buckets, secrets,"
           " accounts, project (its jobs and logs), subnet or repositories, judged by the permissions its role holds"
           " (review.roles). One team holding anything on another's fails, naming both; a principal of no team"
           " fails when it can read or change a team's data, run, read or cancel its jobs, read its logs, act as its"
           " accounts or use its subnet; a platform-wide role that reads no team's data passes.", "",
           _table(["principal", "team", "on team", "what", "role", "permissions"],
                  [[f"`{r['principal']}`", r["team"], r["to_team"], r["what"], r["role"],
                    ", ".join(r["permissions"]) or "-"] for r in access["rows"]]), ""]
    fails = ([f"- {describe(c)}" for c in access["cross_team"]]
             + [f"- `{r['principal']}` (no team) holds {r['role']} on team `{r['to_team']}`'s {r['what']}"
                f" ({', '.join(r['permissions'])}) (`{r['address']}`)" for r in access["no_team"]]
             + [f"- UNKNOWN: `{r['principal']}` holds {r['role']} on team `{r['to_team']}`'s {r['what']}: {r['why']}"
                f" (`{r['address']}`)" for r in access["unknown"]]
             + [f"- source ranges: {p['detail']}" for p in access["ranges"]])
    out += (["**Isolation failures:**", ""] + fails + [""]) if fails else \
        ["No team holds anything on another team's resources; no principal of no team reads a team's data; the"
         " teams' source ranges are disjoint and each team's proxy rules match its own range only.", ""]
    return out


def _short(member: str) -> str:
    return member.split(":", 1)[-1].split("@")[0]


def mermaid(plan: Plan, report: dict) -> str:
    """Identities, the secret, buckets, the job and the egress path."""
    lines = ["flowchart LR"]
    ids: dict[str, str] = {}

    def node(key: str, label: str, shape: str = "[{}]") -> str:
        if key not in ids:
            ids[key] = f"n{len(ids)}"
            lines.append(f"  {ids[key]}{shape.format(json.dumps(label))}")
        return ids[key]

    secret = node("secret", f"Secret {report['token_secret'] or 'HF token'}".replace("projects/", ""), "[({})]")
    trainer = trainer_member(plan)
    job = node("job", "Vertex AI custom job", "[[{}]]")
    if trainer:
        t = node(trainer, f"trainer {_short(trainer)}", "(({}))")
        lines.append(f"  {job} -- runs as --> {t}")
    for r in report["token_readers"]:
        n = node(r["principal"], _short(r["principal"]), "(({}))")
        if r["via"]:
            lines.append(f"  {n} -. impersonates .-> {node(r['via'], _short(r['via']), '(({}))')}")
        else:
            lines.append(f"  {n} -- {r['kind']} --> {secret}")
    for g in grants(plan):
        if g.resource.startswith("bucket:"):
            b = node(g.resource, g.resource.split(":", 1)[1], "[({})]")
            verb = "writes" if "objectUser" in g.role or "Admin" in g.role or "Creator" in g.role else "reads"
            lines.append(f"  {node(g.member, _short(g.member), '(({}))')} -- {verb} --> {b}")
    eg = report["egress"]
    if eg["mode"] == "proxy":
        proxy = node("proxy", "Secure Web Proxy (allow-list)", "{{{{{}}}}}")
        hub = node("hub", "Hugging Face: " + ", ".join(eg["allowed_hosts"]))
        lines.append(f"  {job} -- HTTPS via PSC interface --> {proxy}")
        lines.append(f"  {proxy} -- allowed --> {hub}")
        lines.append(f"  {proxy} -. denied .-> {node('internet', 'anything else')}")
    else:
        lines.append(f"  {job} -- open egress --> {node('internet', 'internet (open mode)')}")
    return "\n".join(dict.fromkeys(lines))


# Rendering -------------------------------------------------------------------------------------------------------
def _table(headers: list[str], rows: list[list]) -> str:
    def cell(x):
        return str(x).replace("|", "\\|") if x not in (None, "") else "-"
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)] +
                     ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


def to_markdown(rep: dict) -> str:
    failed = [p for p in rep["policies"] if not p["passed"]]
    ck = rep["checkov"]
    out = [f"# Security review: {rep['stack']}", "",
           f"Source: {rep['source']} · project `{rep['project']}` · environment `{rep['environment']}`", "",
           f"**Verdict: {'PASS' if rep['ok'] else 'FAIL'}** — {len(rep['policies']) - len(failed)}/"
           f"{len(rep['policies'])} project policies pass; checkov: "
           + (f"{ck['passed']} passed, {ck['failed']} failed, {ck['skipped']} skipped" if ck.get("ran")
              else f"not run ({ck.get('why')})") + "; token readers: "
           + ("as expected" if not rep["unexpected_readers"] else f"UNEXPECTED {rep['unexpected_readers']}")
           + "; write token: " + ("as expected" if not rep["write_token"]["unexpected_readers"] else
                                  f"UNEXPECTED {rep['write_token']['unexpected_readers']}")
           + "; unknowns: " + (f"{len(rep['unresolved'])} UNRESOLVED" if rep["unresolved"] else
                               f"none{' (all accepted)' if rep['unknowns'] else ''}")
           + "; egress allowlist: " + ("as planned" if rep["allowlist"]["ok"] else "FAILS its replay")
           + "; egress model: " + ("no path beyond the allowlist" if rep["egress"]["ok"] else
                                   f"{sum(not f['accepted'] for f in rep['egress']['findings'] + rep['egress']['unknowns'])}"
                                   " FAILING findings"), "",
           "## Who can read the Hugging Face token?" + (f" (team `{rep['view']}`; every team: below)"
                                                        if rep.get("view") else ""), "",
           f"Secret: `{rep['token_secret']}`. Expected: {', '.join(f'`{m}`' for m in rep['expected_readers'])}.", "",
           "Every permission path counts: reading a version, changing IAM on the secret or above it, impersonating"
           " a principal that can (followed transitively), writing what token-holding jobs run, and reading the"
           " spec of `--token-delivery env` jobs.", "",
           _table(["principal", "path", "how", "resource"],
                  [[f"`{r['principal']}`" + ("" if r["expected"] else " **unexpected**"),
                    r["kind"], r["how"], f"`{r['address']}`"] for r in rep["token_readers"]]), ""]
    if rep["unexpected_readers"]:
        out += [f"**Unexpected readers:** {', '.join(rep['unexpected_readers'])}", ""]
    for a in rep["accepted_readers"]:
        out += [f"- Accepted by the reviewer: `{a['principal']}` — {a['reason']}"]
    wt = rep["write_token"]
    if wt["secret"]:
        out += ["", "## Who can reach the write token (publishing)?", "",
                f"Secret: `{wt['secret']}`. Expected: the publisher reads it; the configured publishers may act as"
                f" the publisher ({', '.join(f'`{m}`' for m in wt['expected_readers'])}). Anyone else, and the"
                " trainer always, fails the review.", "",
                _table(["principal", "path", "how", "resource"],
                       [[f"`{r['principal']}`" + ("" if r["expected"] else " **unexpected**"), r["kind"], r["how"],
                         f"`{r['address']}`"] for r in wt["readers"] + wt["writers"]]), ""]
        if wt["unexpected_readers"]:
            out += [f"**Unexpected readers of the write token:** {', '.join(wt['unexpected_readers'])}", ""]
    iso = rep.get("isolation")
    if iso:
        teams = iso["teams"]
        out += ["", "## Teams: isolation matrix", "",
                f"Teams: {', '.join(f'`{t}`' for t in teams)}. Each team's token, write token and job-input buckets"
                " against every principal that reaches any of them (review of each team's own view of the plan, then"
                " compared). A principal of one team reaching another team's resources fails the review, naming"
                " both; so does anyone of no team. " + iso["note"] + ".", "",
                _table(["principal", "team", "as"] + teams,
                       [[f"`{r['principal']}`", r["team"], r["as"] or "-"]
                        + ["<br>".join(r["reaches"].get(t, [])) or "-" for t in teams] for r in iso["rows"]]), ""]
        if iso["cross_team"]:
            out += ["**Cross-team paths:**", ""] + [
                f"- team `{c['from_team']}`'s {c['as']} `{c['principal']}` reaches team `{c['to_team']}`'s"
                f" {c['what']} ({c['kind']}): {c['how']} (`{c['address']}`)" for c in iso["cross_team"]] + [""]
        else:
            out += ["No cross-team path.", ""]
        out += _isolation_markdown(iso.get("access"))
        for name, t in rep["teams"].items():
            al = t["allowlist"]
            out += [f"- team `{name}`: token `{t['token_secret']}` "
                    + ("as expected" if not t["unexpected_readers"] else f"UNEXPECTED {t['unexpected_readers']}")
                    + "; write token " + ("as expected" if not t["write_token"]["unexpected_readers"] else
                                          f"UNEXPECTED {t['write_token']['unexpected_readers']}")
                    + f"; allowlist replayed from {al.get('source_ip', '-')}: {al.get('summary', '-')}"]
        out += [""]
    out += ["", "## Who can replace the token?", "",
            _table(["principal", "how", "resource"], [[f"`{r['principal']}`", r["how"], f"`{r['address']}`"]
                                                      for r in rep["token_writers"]]) if rep["token_writers"]
            else "Nobody in this plan (the platform admin adds versions with `hfgate token set`, outside it).", "",
            "## Unknowns", "",
            "What the review could not resolve offline and that might reach the token. Each fails the verdict"
            " unless the reviewer accepts it (`hfgate review --accept FILE`).", ""]
    out += [_table(["resource", "field", "value", "why", "status"],
                   [[f"`{u['address']}`", u["field"], f"`{u['value']}`", u["why"],
                     f"accepted: {u['accepted']}" if u["accepted"] else "**UNKNOWN**"] for u in rep["unknowns"]]), ""] \
        if rep["unknowns"] else ["None: every grant that could reach the token was resolved.", ""]
    refs = rep.get("references") or {"paths": [], "unknowns": [], "inert": []}
    out += ["## Default deny over resource types", "",
            "Every resource, data source, local and output of any type that names the trainer, the submitter or the"
            " token secret (as a literal or a reference). A reference passes only through a row of the table of"
            " inert references (`review/references.py`, each row with its reason); a known run-as type is a path"
            " (above, `resource:`); anything else is UNKNOWN.", "",
            _table(["resource", "argument", "names", "verdict"],
                   [[f"`{x['address']}`", x["field"], x["protected"], "path: " + x["how"]] for x in refs["paths"]]
                   + [[f"`{x['address']}`", x["field"], "-", "**UNKNOWN**"] for x in refs["unknowns"]]
                   + [[f"`{x['address']}`", x["field"], x["protected"], "inert: " + x["why"]]
                      for x in refs["inert"]]), ""]
    out += ["## Identity and access matrix", "",
            _table(["principal", "resource", "role", "flags"],
                   [[f"`{r['principal']}`", f"`{r['resource']}`", f"`{r['role']}`", ", ".join(r["flags"])]
                    for r in rep["iam"]]), ""]
    eg = rep["egress"]
    out += ["## Egress", "", f"- Mode: **{eg['mode']}**",
            f"- Allowed hosts: {', '.join(f'`{h}`' for h in eg['allowed_hosts']) or '-'}",
            f"- Enforcement: {eg['enforcement']}", f"- Firewall default: {eg['firewall_default']}",
            f"- NAT logging: {'; '.join(eg['nat_logging'])}", ""]
    if eg["rules"]:
        out += [_table(["priority", "action", "rule", "destination"],
                       [[r["priority"], r["action"], r["rule"], ", ".join(r["dest"])] for r in eg["rules"]]), ""]
    out += ["### What jobs can reach, per source range", "",
            "Computed from every resource that routes a job's packets (review/egress_model: the proxy rules for the"
            " CEL they are written in, firewalls in Google's order, routes, NAT, peering, PSC, the perimeter),"
            " not replayed; compared with what the allowlist implies (stacks/hub_protocol.py).", "",
            _table(["source", "range", "hosts", "methods", "paths"],
                   [[x["source"], x["range"], x["hosts"], x["methods"], x["paths"]] for x in eg["reach"]]), "",
            "Firewall, per source range: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in eg["firewall"].items())
            + "." if eg["firewall"] else "", ""]
    if eg["findings"] or eg["unknowns"]:
        out += ["**Egress findings** (each fails the verdict unless accepted: `[[egress]]` in the accept file):", "",
                _table(["resource", "rule", "what", "example", "status"],
                       [[f"`{f['address']}`", f["rule"], f["what"], f"`{f['example']}`" if f["example"] else "-",
                         f"accepted: {f['accepted']}" if f["accepted"] else "**FAIL**"] for f in eg["findings"]]
                       + [[f"`{u['address']}`", u["field"], u["why"], "-",
                           f"accepted: {u['accepted']}" if u["accepted"] else "**UNKNOWN**"] for u in eg["unknowns"]]),
                ""]
    else:
        out += ["No egress finding: nothing opens a path beyond the allowlist.", ""]
    al = rep["allowlist"]
    out += ["## What this environment may download", "", f"- Allowlist: {al['summary']}",
            f"- Models: {', '.join(f'`{m}`' for m in al['models']) or '(any)'}",
            f"- Datasets: {', '.join(f'`{d}`' for d in al['datasets']) or '(any)'}", ""]
    if al["rules"]:
        out += ["Secure Web Proxy rules (priority order; no match is denied):", "",
                _table(["priority", "rule", "action", "session matcher", "application matcher"],
                       [[r["priority"], r["name"], r["action"], f"`{r['session']}`",
                         f"`{r['application']}`" if r["application"] else "-"] for r in al["rules"]]), ""]
    if al["replay"]:
        out += ["Replay of recorded traffic (the real `trl sft` and `hf download`, an upload, an unlisted model;"
                " review/traffic/recorded.jsonl) for each listed repository:", "",
                _table(["request", "expected", "decision", "rule", "note"],
                       [[f"`{d['method']} {d['host']}{d['path']}`", d["expect"],
                         d["action"] if d["as_expected"] else f"**{d['action'].upper()}**", d["rule"], d["note"]]
                        for d in al["replay"]]), ""]
    dp = rep["data_protection"]
    out += ["## Data protection", "",
            f"- Token value in Terraform state: **{'YES' if dp['token_in_state'] else 'no'}**"
            f" ({len(dp['versions'])} version resources; "
            f"{sum(v['write_only'] for v in dp['versions'])} write-only)", "",
            _table(["secret", "replication", "CMEK", "rotation", "deletion protection"],
                   [[s["secret"], s["replication"], s["cmek"], s["rotation"], s["deletion_protection"]]
                    for s in dp["secrets"]]), "",
            _table(["bucket", "public access prevention", "uniform", "versioning", "soft delete (s)", "logging",
                    "CMEK"], [[b["bucket"], b["public_access_prevention"], b["uniform_access"], b["versioning"],
                               b["soft_delete"], b["logging"], b["cmek"]] for b in dp["buckets"]]), ""]
    out += ["## Findings", "", "### Project policies", "",
            _table(["id", "policy", "severity", "result", "fix"],
                   [[p["id"], p["title"], p["severity"], "pass" if p["passed"] else
                     "FAIL: " + "; ".join(f"`{v['address']}` {v['detail']}" for v in p["violations"]),
                     p["fix"] if not p["passed"] else ""] for p in rep["policies"]]), "", "### checkov", ""]
    if ck.get("ran"):
        out += [f"{ck['passed']} passed, {ck['failed']} failed, {ck['skipped']} skipped (skips and their reasons:"
                " `.checkov.yaml`).", ""]
        out += [_table(["check", "resource", "name"], [[c["id"], c["resource"], c["name"]]
                                                       for c in ck["failed_checks"]]), ""] if ck["failed_checks"] else []
    else:
        out += [f"Not run: {ck.get('why')}.", ""]
    if rep.get("live"):            # `hfgate review --live`: the deployed state's own section (review.live)
        from review.live import markdown as live_markdown
        out += live_markdown(rep["live"]) + [""]
    out += ["## Diagram", "", "```mermaid", rep["diagram"], "```", ""]
    return "\n".join(out)


RULE_TYPE_NAME = "google_network_security_gateway_security_policy_rule"

REVIEW_RULES = [
    ("HFG-READER", "Only the trainer and the submitter reach the token",
     "A principal other than the expected ones has a permission path to the Hugging Face token.",
     "remove the grant, or accept the principal with a reason in an accept file ([[reader]])"),
    ("HFG-WRITE-READER", "Only the publisher (and who may act as it) reaches the write token",
     "A principal other than the publisher and the configured publishers, or the trainer, has a permission path to"
     " the Hugging Face write token.",
     "remove the grant; who may publish is `publishers` in config/<env>.toml"),
    ("HFG-UNKNOWN", "Every grant that could reach the token is resolvable offline",
     "A role, member, target or policy is an expression, variable, data source or value known after apply.",
     "write it literally, review the `terraform show -json` plan, or accept it with a reason ([[unknown]])"),
    ("HFG-EGRESS", "Jobs reach exactly the listed downloads",
     "What the planned proxy rules, firewalls, routes, NAT, peering, PSC and perimeter let jobs reach goes beyond "
     "what the allowlist implies, or could not be computed (UNKNOWN); or recorded traffic replayed through the "
     "planned Secure Web Proxy rules (cel-python) was decided otherwise than expected.",
     "keep the rules stacks/egress_rules.py generates (and the TLS inspection policy); change allow_models / "
     "allow_datasets in config/<env>.toml instead of adding rules"),
    ("HFG-ISOLATION", "No team holds anything on another team's resources",
     "A principal of one team holds a permission on another team's buckets, secrets, accounts, project (its jobs and"
     " logs), subnet or repositories; or a principal of no team can read or change a team's data; or the teams'"
     " source ranges overlap, or a team's proxy rule matches sources outside its range (review.isolation).",
     "grant on the team's own resources only (stacks/team.py); platform-wide grants must read no team's data"),
]


def to_sarif(rep: dict, artifact: str) -> dict:
    rules = [{"id": p["id"], "name": p["title"], "shortDescription": {"text": p["title"]},
              "fullDescription": {"text": p["rationale"]}, "help": {"text": p["fix"]},
              "properties": {"security-severity": {"critical": "9.5", "high": "8.0", "medium": "5.0",
                                                   "low": "2.0"}[p["severity"]]},
              "defaultConfiguration": {"level": "error" if p["severity"] in ("critical", "high") else "warning"}}
             for p in rep["policies"]]
    results = []
    for p in rep["policies"]:
        for v in p["violations"]:
            results.append({"ruleId": p["id"], "level": "error" if p["severity"] in ("critical", "high") else
                            "warning", "message": {"text": f"{v['detail']}. Fix: {p['fix']}"},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                           "logicalLocations": [{"fullyQualifiedName": v["address"],
                                                                 "kind": "resource"}]}]})
    rules += [{"id": rid, "name": name, "shortDescription": {"text": name}, "fullDescription": {"text": text},
               "help": {"text": fix}, "properties": {"security-severity": "9.0"},
               "defaultConfiguration": {"level": "error"}} for rid, name, text, fix in REVIEW_RULES]
    for principal in rep["unexpected_readers"]:
        for r in [r for r in rep["token_readers"] + rep["token_writers"] if r["principal"] == principal]:
            results.append({"ruleId": "HFG-READER", "level": "error",
                            "message": {"text": f"{principal} {r['kind']}: {r['how']}"},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                           "logicalLocations": [{"fullyQualifiedName": r["address"],
                                                                 "kind": "resource"}]}]})
    wt = rep.get("write_token") or {"unexpected_readers": [], "readers": [], "writers": []}
    for principal in wt["unexpected_readers"]:
        for r in [r for r in wt["readers"] + wt["writers"] if r["principal"] == principal]:
            results.append({"ruleId": "HFG-WRITE-READER", "level": "error",
                            "message": {"text": f"{principal} {r['kind']} (write token): {r['how']}"},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                           "logicalLocations": [{"fullyQualifiedName": r["address"],
                                                                 "kind": "resource"}]}]})
    for u in rep["unknowns"]:
        if not u["accepted"]:
            results.append({"ruleId": "HFG-UNKNOWN", "level": "error",
                            "message": {"text": f"{u['field']} = {u['value']}: {u['why']}"},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                           "logicalLocations": [{"fullyQualifiedName": u["address"],
                                                                 "kind": "resource"}]}]})
    al = rep.get("allowlist") or {}
    if not al.get("ok", True):
        bad = [d for d in al.get("replay", []) if not d["as_expected"]]
        texts = [f"{d['method']} {d['host']}{d['path']}: expected {d['expect']}, got {d['action']} ({d['rule']}"
                 f"{': ' + d['why'] if d['action'] == 'unknown' else ''})" for d in bad] or [al.get("summary", "")]
        for text in texts:
            results.append({"ruleId": "HFG-EGRESS", "level": "error", "message": {"text": text},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                           "logicalLocations": [{"fullyQualifiedName": RULE_TYPE_NAME,
                                                                 "kind": "resource"}]}]})
    eg = rep.get("egress") or {}
    for f in eg.get("findings", []) + eg.get("unknowns", []):
        if f.get("accepted"):
            continue
        text = (f"{f['rule']}: {f['what']}" + (f" (e.g. {f['example']})" if f.get("example") else "")
                if "what" in f else f"UNKNOWN {f['field']}: {f['why']}")
        results.append({"ruleId": "HFG-EGRESS", "level": "error", "message": {"text": text},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                       "logicalLocations": [{"fullyQualifiedName": f["address"],
                                                             "kind": "resource"}]}]})
    access = (rep.get("isolation") or {}).get("access") or {}
    from review.isolation import describe
    isolation = ([(describe(c), c["address"]) for c in access.get("cross_team", [])]
                 + [(f"{r['principal']} (no team) holds {r['role']} on team {r['to_team']}'s {r['what']}"
                     f" ({', '.join(r['permissions'])})", r["address"]) for r in access.get("no_team", [])]
                 + [(f"UNKNOWN: {r['principal']} holds {r['role']} on team {r['to_team']}'s {r['what']}: {r['why']}",
                     r["address"]) for r in access.get("unknown", [])]
                 + [(p["detail"], p.get("address", "(source ranges)")) for p in access.get("ranges", [])])
    for text, address in isolation:
        results.append({"ruleId": "HFG-ISOLATION", "level": "error", "message": {"text": text},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                       "logicalLocations": [{"fullyQualifiedName": address, "kind": "resource"}]}]})
    if rep.get("live"):            # `review --live`: the drift table, as warnings (review.live)
        from review.live import sarif as live_sarif
        live_rules, live_results = live_sarif(rep["live"], artifact)
        rules += live_rules
        results += live_results
    for c in rep["checkov"].get("failed_checks", []):
        results.append({"ruleId": c["id"], "level": "error", "message": {"text": c["name"]},
                        "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact}},
                                       "logicalLocations": [{"fullyQualifiedName": c["resource"]}]}]})
    return {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
            "runs": [{"tool": {"driver": {"name": "hfgate-review", "informationUri":
                                          "https://github.com/hfgate/hfgate", "rules": rules}},
                      "results": results}]}


def write(rep: dict, outdir: Path, artifact: str) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {"md": outdir / "REPORT.md", "json": outdir / "report.json", "sarif": outdir / "report.sarif"}
    paths["md"].write_text(to_markdown(rep))
    paths["json"].write_text(json.dumps(rep, indent=2) + "\n")
    paths["sarif"].write_text(json.dumps(to_sarif(rep, artifact), indent=2) + "\n")
    return paths


def run(env: str, *, plan: Path | None = None, out: Path | None = None, accept: Path | None = None,
        checkov: bool = True) -> tuple[dict, dict[str, Path]]:
    """The whole review, as `hfgate review` runs it: the synthesized stack of `env` (or a `terraform show -json`
    plan), the accept file, checkov, the report, written to `out` (default reports/<env>). Returns (report,
    paths of REPORT.md / report.json / report.sarif)."""
    from review.plan import load, synthesized
    root = Path(__file__).resolve().parent.parent
    if plan is not None:
        path = plan
    else:
        path = synthesized(Path(os.environ.get("CDKTF_OUTDIR") or root / "cdktf.out"), env)
        if not path.exists():
            raise UsageError(f"no synthesized stack at {path}", "run `make synth` first (or pass --plan plan.json)")
    loaded = load(path)
    accepts = load_accepts(accept)
    scan = run_checkov(path if plan is not None else path.parent, plan_json=plan is not None) if checkov else None
    report = review(loaded, scan, accepts)
    return report, write(report, out or root / "reports" / env, str(path))

"""The environment's allowlist (outputs contract `allowed_models` / `allowed_datasets`, from config/<env>.toml
`allow_models` / `allow_datasets`), checked before anything else: before the token is read, before any job exists.
The proxy enforces the same list in the job (stacks.egress_rules); this check makes the refusal early and clear."""
from __future__ import annotations

from jobs.preflight import FAIL, OK, Check, Report
from stacks.contract import Outputs
from stacks.errors import EXIT_ACCESS
from stacks.facts import split_allow_entry


def allowlist_check(outputs: Outputs, repo_id: str, revision: str | None, kind: str) -> Check | None:
    """None when the environment has no allowlist; else an OK or FAIL check naming the config field."""
    entries = outputs.allowed_models if kind == "model" else outputs.allowed_datasets
    if not outputs.allowed_models and not outputs.allowed_datasets:
        return None
    field = "allow_models" if kind == "model" else "allow_datasets"
    # With teams, each team's list is its own table: name it, so the fix edits the right one.
    where = f"config/{outputs.env}.toml" + (f" [teams.{outputs.team}]" if outputs.team else "")
    redeploy = f"run `make deploy ENV={outputs.env}` and export the outputs again"
    pins = {repo: rev for repo, rev in map(split_allow_entry, entries)}
    if repo_id not in pins:
        listed = ", ".join(entries) or "none"
        return Check(f"allowlist ({kind})", FAIL,
                     f"{kind} {repo_id} is not in {field} of {where} (listed: {listed}); the proxy would refuse it",
                     f"add \"{repo_id}\" to {field} in {where}, {redeploy}", EXIT_ACCESS)
    pin = pins[repo_id]
    if pin is not None and revision is not None and revision != pin:
        return Check(f"allowlist ({kind})", FAIL,
                     f"{field} in {where} pins {repo_id} to {pin}, not {revision}; the proxy allows that revision only",
                     f"submit with --revision {pin}, or change the pin in {field} of {where} and {redeploy}",
                     EXIT_ACCESS)
    return Check(f"allowlist ({kind})", OK, f"{repo_id} is listed in {field}" + (f" at {pin}" if pin else ""))


def allowlist_report(outputs: Outputs, model: str, revision: str, dataset: str | None = None) -> Report | None:
    """A failed Report when the model (at its revision) or the dataset is outside the allowlist, else None."""
    checks = [c for c in (allowlist_check(outputs, model, revision, "model"),
                          allowlist_check(outputs, dataset, None, "dataset") if dataset else None) if c]
    if any(c.status == FAIL for c in checks):
        return Report(model, revision, checks=checks)
    return None

"""The outputs contract: the only seam between the stacks and the jobs.

One typed, versioned definition. The stacks emit each field as a Terraform output with the field's name; the jobs
read `cdktn output --outputs-file` JSON, `terraform output -json` JSON, or the JSON this module writes, into the
same `Outputs` object. No provider import here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from stacks.config import Settings
from stacks.errors import UsageError
from stacks.facts import HF_HOST_RULES
from stacks.naming import PROXY_PORT, names_for

# 2: mirror_bucket (mirrors live where jobs cannot write); 3: allowlist, proxy CA; 4: trusted image registries and
# the CMEK key jobs are encrypted with; 5: the write token's secret, the publisher account and publishers (hfgate
# publish), and the team (one contract per team, `team_<name>` outputs; "" for an environment without teams); 6: a
# team is a project: `project_id`/`project_number` are the team's own project (its jobs, secrets, accounts, buckets,
# network attachment), `host_project_id` the environment's (the Shared VPC host: network, proxy, CA, perimeter).
CONTRACT_VERSION = 6


@dataclass(frozen=True)
class Outputs:
    contract_version: int
    env: str
    team: str                    # "" in an environment without teams
    project_id: str              # the team's own project (jobs, secrets, accounts, buckets); the environment's without teams
    project_number: str          # that project's number
    host_project_id: str         # the environment's project: Shared VPC host (network, proxy, CA); == project_id without teams
    region: str
    token_secret: str            # projects/{project}/secrets/{id}: pin a version at submit time
    trainer_email: str           # what Vertex jobs run as; may read the token secret
    submitter_email: str         # what CI or a person submits with; may read the token and act as trainer
    write_token_secret: str      # projects/{project}/secrets/{id}: the write token, read only by the publisher
    publisher_email: str         # the write token's only reader; `hfgate publish` impersonates it
    publishers: tuple[str, ...]  # IAM members who may act as the publisher (config `publishers`)
    submitters: tuple[str, ...]  # IAM members who may act as the submitter (a team's `submitters`; () without teams)
    staging_bucket: str          # gs://...
    artifacts_bucket: str        # gs://... (job outputs; the trainer writes here)
    mirror_bucket: str           # gs://... (`hfgate mirror` copies; the submitter writes, jobs only read)
    egress_mode: str             # "proxy" or "open"
    egress_enforced: bool        # True only inside a perimeter whose enforced configuration (not a dry-run spec)
    #                              holds the project: the stacks export the perimeter construct's state, and the
    #                              review fails a plan whose perimeter says otherwise (review.egress_model)
    network_attachment: str      # PSC interface attachment for the job ("" in open mode)
    proxy_url: str               # explicit proxy for the job ("" in open mode)
    hf_host_rules: tuple[str, ...]
    training_image: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    allowed_models: tuple[str, ...]    # "org/name" or "org/name@rev"; empty: any (config allow_models)
    allowed_datasets: tuple[str, ...]  # "org/name"; empty: any (config allow_datasets)
    proxy_ca_certificate: str    # PEM of the proxy's TLS inspection CA ("" without inspection): jobs trust it
    trusted_image_registries: tuple[str, ...]  # images from elsewhere must be pinned by digest (facts.image_problem)
    kms_key: str                 # Cloud KMS key for the job's encryption_spec ("" without CMEK)

    @property
    def artifacts_bucket_name(self) -> str:
        return self.artifacts_bucket.removeprefix("gs://")

    @property
    def mirror_bucket_name(self) -> str:
        return self.mirror_bucket.removeprefix("gs://")

    @property
    def staging_bucket_name(self) -> str:
        return self.staging_bucket.removeprefix("gs://")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for name in TUPLE_FIELDS:
            data[name] = list(getattr(self, name))
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Outputs))
TUPLE_FIELDS = ("hf_host_rules", "allowed_models", "allowed_datasets", "trusted_image_registries", "publishers",
                "submitters")


def outputs_from_settings(settings: Settings, project_number: str | None = None,
                          team: str | None = None) -> Outputs:
    """The contract as the stacks would export it, for environments with no Terraform state (the local cloud)."""
    t = settings.team(team)
    if settings.teams and t is None:
        raise OutputsError(f"environment {settings.env} has teams ({', '.join(x.name for x in settings.teams)})"
                           + (f", not {team!r}" if team else ""), "pass --team NAME (or set HFGATE_TEAM)")
    names = names_for(settings, t.name if t else None)
    proxy = settings.egress_mode.value == "proxy"
    shape = settings.job_machine(t)
    project = settings.project_of(t)      # the team's own project; the environment's without teams
    return Outputs(
        contract_version=CONTRACT_VERSION,
        env=settings.env,
        team=t.name if t else "",
        project_id=project,
        # A team's configured number is its own project's; `project_number` is the environment's (or a stand-in).
        project_number=(t.project_number if t is not None and t.project_number else None) or project_number
        or settings.project_number or "",
        host_project_id=settings.project_id,
        region=settings.region,
        token_secret=f"projects/{project}/secrets/{names.secret_id}",
        trainer_email=names.email(names.trainer_account_id, project),
        submitter_email=names.email(names.submitter_account_id, project),
        write_token_secret=f"projects/{project}/secrets/{names.write_secret_id}",
        publisher_email=names.email(names.publisher_account_id, project),
        publishers=tuple(f"serviceAccount:{names.email(names.submitter_account_id, project)}"
                         if p == "submitter" else p for p in (t.publishers if t else settings.publishers)),
        submitters=t.submitters if t else (),
        staging_bucket=f"gs://{names.staging_bucket}",
        artifacts_bucket=f"gs://{names.artifacts_bucket}",
        mirror_bucket=f"gs://{names.mirror_bucket}",
        egress_mode=settings.egress_mode.value,
        egress_enforced=settings.egress_enforced,
        network_attachment=(f"projects/{project}/regions/{settings.region}/networkAttachments/"
                            f"{names.network_attachment}") if proxy else "",
        proxy_url=f"http://{names.proxy_address}:{PROXY_PORT}" if proxy else "",
        hf_host_rules=HF_HOST_RULES,
        training_image=settings.training_image,
        machine_type=shape[0],
        accelerator_type=shape[1],
        accelerator_count=shape[2],
        allowed_models=t.allow_models if t else settings.allow_models,
        allowed_datasets=t.allow_datasets if t else settings.allow_datasets,
        proxy_ca_certificate="",      # issued by Certificate Authority Service at apply; none without a deploy
        trusted_image_registries=settings.trusted_registries,
        kms_key=settings.kms_key or "",
    )


class OutputsError(UsageError):
    pass


def _how_to_produce(env: str | None) -> str:
    import os
    state = os.environ.get("HFGATE_LOCALCLOUD_STATE")     # set by the local cloud's env file
    if state or (env or "").startswith("local"):
        return ("the local cloud writes it when it starts: run `python -m localcloud up`, then `source"
                f" {state or '.localcloud'}/localcloud.env` again (it sets HFGATE_OUTPUTS)")
    e = env or "dev"
    return (f"run `make deploy ENV={e}` then `cdktn output hfgate-{e} --outputs-file outputs/{e}.json`"
            f" (or `terraform output -json > outputs/{e}.json` in cdktf.out/stacks/hfgate-{e})")


def _unwrap(v):
    return v["value"] if isinstance(v, dict) and "value" in v and "type" in v else v


def _pick_team(data: dict, team: str | None, source: str) -> dict:
    """From a stack's outputs with `team_<name>` objects (an environment with teams), the named team's contract."""
    teams = {k.removeprefix("team_"): _unwrap(v) for k, v in data.items()
             if k.startswith("team_") and isinstance(_unwrap(v), dict)}
    if not teams:
        return data
    if team is None:
        raise OutputsError(f"{source} holds the outputs of several teams ({', '.join(sorted(teams))})",
                           "pass --team NAME (or set HFGATE_TEAM)")
    if team not in teams:
        raise OutputsError(f"{source} has no team {team!r} (teams: {', '.join(sorted(teams))})",
                           "pass one of those to --team, or add the team to config/<env>.toml and apply")
    return teams[team]


def parse_outputs(data: object, *, env: str | None = None, source: str = "<outputs>",
                  team: str | None = None) -> Outputs:
    """Read any of the three accepted shapes into Outputs; anything else is an OutputsError (exit 2). In an
    environment with teams, `team` picks the team's contract."""
    if not isinstance(data, dict):
        raise OutputsError(f"{source} is not a JSON object of outputs", _how_to_produce(env))
    flat: dict
    if any(k.startswith("team_") for k in data) and "contract_version" not in data:
        data = _pick_team(data, team, source)
    if "contract_version" in data:
        flat = data
    else:
        data = {k: (_pick_team(v, team, f"{source} ({k})") if isinstance(v, dict) and any(
            x.startswith("team_") for x in v) else v) for k, v in data.items()}
        stacks = {k: v for k, v in data.items() if isinstance(v, dict) and "contract_version" in v}
        if not stacks:
            raise OutputsError(f"{source} holds no hfgate outputs (no contract_version)", _how_to_produce(env))
        if env is not None and f"hfgate-{env}" in stacks:
            flat = stacks[f"hfgate-{env}"]
        elif len(stacks) == 1 and env is None:
            flat = next(iter(stacks.values()))
        else:
            raise OutputsError(f"{source} has outputs for {', '.join(sorted(stacks))}, not for env {env!r}",
                               "pass --env with one of those, or the outputs file of the right environment")
    # `terraform output -json` wraps each value as {"value": ..., "type": ..., "sensitive": ...}.
    values = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in flat.items()}
    version = values.get("contract_version")
    if version != CONTRACT_VERSION:
        raise OutputsError(f"{source} has contract version {version!r}; this hfgate reads version {CONTRACT_VERSION}",
                           "re-export the outputs with the stacks of this release: " + _how_to_produce(env))
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise OutputsError(f"{source} lacks outputs: {', '.join(missing)}", _how_to_produce(env))
    values = {f: values[f] for f in FIELDS}
    for name in TUPLE_FIELDS:
        values[name] = tuple(values[name] or ())
    values["proxy_ca_certificate"] = values["proxy_ca_certificate"] or ""
    values["kms_key"] = values["kms_key"] or ""
    values["egress_enforced"] = bool(values["egress_enforced"])
    values["accelerator_count"] = int(values["accelerator_count"])
    values["project_number"] = str(values["project_number"])
    values["team"] = values["team"] or ""
    outputs = Outputs(**values)
    if env is not None and outputs.env != env:
        raise OutputsError(f"{source} is for env {outputs.env!r}, not {env!r}",
                           "pass the outputs file of the environment you meant, or drop --env")
    if team is not None and outputs.team != team:
        raise OutputsError(f"{source} is for {'team ' + repr(outputs.team) if outputs.team else 'an environment'}"
                           f" without teams, not team {team!r}", "drop --team, or pass the right outputs file")
    return outputs


def load_outputs(path: Path, *, env: str | None = None, team: str | None = None) -> Outputs:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise OutputsError(f"outputs file {path} does not exist", _how_to_produce(env)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"outputs file {path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                           _how_to_produce(env)) from None
    return parse_outputs(data, env=env, source=str(path), team=team)

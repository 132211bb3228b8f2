"""Typed settings per environment (`config/<env>.toml`), validated at load.

Every problem names its field and the fix; a bad file raises ConfigError (exit 2) before anything is written.
"""
from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from stacks.constraints import KMS_LOCATION, LABEL_KEY, LABEL_VALUE
from stacks.errors import ConfigError
from stacks.facts import (
    DEFAULT_TRAINING_IMAGE,
    DEFAULT_TRUSTED_REGISTRIES,
    VERTEX_REGIONS,
    allow_entry_problem,
    image_problem,
    machine_problem,
    registry_entry_problem,
)

import os

CONFIG_DIR = Path(os.environ.get("HFGATE_CONFIG_DIR") or Path(__file__).resolve().parent.parent / "config")

_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,13}[a-z0-9]$")
# One source for Google's label and key-name rules: the constraints table synth and the local cloud apply.
_LABEL_KEY, _LABEL_VALUE, _KMS_KEY = LABEL_KEY, LABEL_VALUE, KMS_LOCATION
_POLICY_ID = re.compile(r"^[0-9]{1,20}$")
_LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")


class EgressMode(str, Enum):
    PROXY = "proxy"  # custom VPC, PSC interface, Secure Web Proxy allowing only the Hugging Face hosts
    OPEN = "open"    # Google-managed egress: uncontrolled, as in Hugging Face's own Vertex examples


_TEAM = re.compile(r"^[a-z][a-z0-9]{1,9}$")
_MEMBER = re.compile(r"^(user:|group:|serviceAccount:|principal://|principalSet://)\S+$")


@dataclass(frozen=True)
class Team:
    """One ML team of an environment (`[teams.<name>]`): its own Google Cloud project (a Shared VPC service project
    holding its token secrets, identities, buckets, Vertex AI jobs and network attachment), subnet and allowlist;
    the network, proxy, CA and perimeter are the environment's project's (the Shared VPC host)."""
    name: str
    # An existing project per team, made the way the organization makes projects (its project factory: folder,
    # billing, org policies, budgets); the stacks attach it to the host and fill it, never create or delete it.
    project_id: str = ""
    project_number: str | None = None             # only for environments without a real project (the local cloud)
    subnet_cidr: str = ""                         # its PSC network attachment's subnet (proxy mode)
    submitters: tuple[str, ...] = ()              # IAM members who may act as the team's submitter
    publishers: tuple[str, ...] = ("submitter",)  # who may act as the team's publisher
    allow_models: tuple[str, ...] = ()
    allow_datasets: tuple[str, ...] = ()
    machine_type: str | None = None               # defaults for the team's jobs (else the environment's)
    accelerator_type: str | None = None
    accelerator_count: int | None = None


TEAM_FIELDS = {f for f in Team.__dataclass_fields__ if f != "name"}


@dataclass(frozen=True)
class Settings:
    env: str
    project_id: str
    region: str
    prefix: str
    egress_mode: EgressMode = EgressMode.PROXY
    labels: dict[str, str] = field(default_factory=dict)
    access_policy_id: str | None = None
    kms_key: str | None = None
    secret_replica_locations: tuple[str, ...] = ()
    token_rotation_days: int = 90
    training_image: str = DEFAULT_TRAINING_IMAGE
    machine_type: str = "g2-standard-8"
    accelerator_type: str | None = "NVIDIA_L4"
    accelerator_count: int = 1
    subnet_cidr: str = "10.8.0.0/24"
    proxy_only_cidr: str = "10.9.0.0/23"
    # Only for environments without a real project (the local cloud); real ones read it from the provider.
    project_number: str | None = None
    # Remote state; without it Terraform keeps local state in cdktf.out (fine for a trial, not for a team).
    state_bucket: str | None = None
    # Opt-in: manage the token value from Terraform through a write-only version (never in plan or state).
    token_write_only: bool = False
    # What the environment may download from the Hub: "org/name" or "org/name@revision" (models only). Empty:
    # any repository on the Hub hosts (today's behaviour; the review says so).
    allow_models: tuple[str, ...] = ()
    allow_datasets: tuple[str, ...] = ()
    # Registries whose images may run unpinned ("{project}" is this project); others need @sha256 (facts).
    trusted_image_registries: tuple[str, ...] = DEFAULT_TRUSTED_REGISTRIES
    # CMEK of the token secret's replicas: one key per replica location (a replica's key must be in its location).
    # The replica in `region` may use kms_key; every other replica location needs its own key here.
    secret_kms_keys: dict[str, str] = field(default_factory=dict)
    # The VPC Service Controls perimeter (with access_policy_id): dry-run first (Google's documented rollout), and
    # who must reach the project from outside it (the deployer, platform admins, CI submitters; the stacks' own
    # submitter is added).
    perimeter_dry_run: bool = True
    perimeter_ingress_identities: tuple[str, ...] = ()
    # Registry projects outside the perimeter whose images jobs pull ("projects/NUMBER"): each gets an egress rule for
    # Artifact Registry's DockerRead only (the shape Google documents for mirror.gcr.io; README, "Images and the
    # perimeter"). Empty by default: Google documents no rule for the Deep Learning Containers' project.
    perimeter_image_projects: tuple[str, ...] = ()
    # Who may publish results to the Hub (`hfgate publish`): they impersonate the publisher account, the only
    # reader of the write token. "submitter" stands for the stacks' submitter; others are IAM members.
    publishers: tuple[str, ...] = ("submitter",)
    # Several ML teams on one platform; empty: one implicit team (today's names and outputs).
    teams: tuple[Team, ...] = ()
    # Methods jobs may use on the Hugging Face hosts: "read" (GET and HEAD) or "any" (uploads too: an explicit
    # choice the review reports as a failing finding unless the reviewer accepts it).
    hub_methods: str = "read"

    def job_machine(self, team: Team | None) -> tuple[str, str, int]:
        """(machine type, accelerator type or "", count) of a team's jobs: its own defaults when it sets a machine
        type, else the environment's."""
        if team is not None and team.machine_type:
            return team.machine_type, team.accelerator_type or "", team.accelerator_count or 0
        return self.machine_type, self.accelerator_type or "", self.accelerator_count

    def project_of(self, team: "Team | str | None") -> str:
        """The project holding a team's resources (its own); the environment's project without teams."""
        t = self.team(team) if isinstance(team, str) else team
        return t.project_id if t is not None and t.project_id else self.project_id

    def project_number_of(self, team: "Team | str | None") -> str | None:
        t = self.team(team) if isinstance(team, str) else team
        return t.project_number if t is not None and t.project_id else self.project_number

    def team(self, name: str | None) -> Team | None:
        """The named team (None for an environment without teams); ConfigError-free lookup for callers."""
        return next((t for t in self.teams if t.name == name), None)

    @property
    def trusted_registries(self) -> tuple[str, ...]:
        return tuple(r.replace("{project}", self.project_id) for r in self.trusted_image_registries)

    @property
    def replicas(self) -> tuple[str, ...]:
        return self.secret_replica_locations or (self.region,)

    @property
    def replica_keys(self) -> dict[str, str]:
        """location -> Cloud KMS key of each secret replica (empty without CMEK)."""
        if not self.kms_key:
            return {}
        return {loc: self.secret_kms_keys.get(loc) or self.kms_key for loc in self.replicas}

    @property
    def egress_enforced(self) -> bool:
        """The allowlist is enforced only inside an enforced (not dry-run) VPC Service Controls perimeter."""
        return (self.egress_mode is EgressMode.PROXY and self.access_policy_id is not None
                and not self.perimeter_dry_run)


_FIELDS = {f for f in Settings.__dataclass_fields__ if f != "env"}


def load_settings(env: str, config_dir: Path | None = None) -> Settings:
    path = (config_dir or CONFIG_DIR) / f"{env}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir or CONFIG_DIR).glob("*.toml"))
        raise ConfigError(str(path), [("env", f"no such environment {env!r}; known: {', '.join(known) or 'none'}"
                                              f" (create {path.name} from config/dev.toml)")])
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("(file)", f"not valid TOML: {exc}")]) from None
    return parse_settings(env, raw, str(path))


def parse_settings(env: str, raw: dict, source: str = "<settings>") -> Settings:
    problems: list[tuple[str, str]] = []

    def need(name: str, kind: type, default=None, required: bool = False):
        if name not in raw:
            if required:
                problems.append((name, f"missing; add `{name} = ...`"))
            return default
        value = raw[name]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            problems.append((name, f"must be a {kind.__name__}, got {type(value).__name__}"))
            return default
        return value

    for unknown in sorted(set(raw) - _FIELDS):
        problems.append((unknown, f"unknown field; known fields: {', '.join(sorted(_FIELDS))}"))

    project_id = need("project_id", str, "", required=True)
    if project_id and not _PROJECT_ID.match(project_id):
        problems.append(("project_id", f"{project_id!r} is not a valid project id: 6-30 lowercase letters, digits or"
                                       " hyphens, starting with a letter and not ending with a hyphen"))
    region = need("region", str, "", required=True)
    if region and region not in VERTEX_REGIONS:
        problems.append(("region", f"{region!r} does not offer Vertex AI custom training; use one of: "
                                   + ", ".join(VERTEX_REGIONS)))
    prefix = need("prefix", str, "", required=True)
    if prefix and not _PREFIX.match(prefix):
        problems.append(("prefix", f"{prefix!r} must be 2-15 lowercase letters, digits or hyphens, starting with a"
                                   " letter (it prefixes every resource name)"))
    mode_raw = need("egress_mode", str, "proxy")
    try:
        egress_mode = EgressMode(mode_raw)
    except ValueError:
        problems.append(("egress_mode", f"{mode_raw!r} is not an egress mode; use \"proxy\" (Hugging Face hosts"
                                        " only) or \"open\" (uncontrolled)"))
        egress_mode = EgressMode.PROXY
    hub_methods = need("hub_methods", str, "read")
    if hub_methods not in ("read", "any"):
        problems.append(("hub_methods", f"{hub_methods!r}: use \"read\" (GET and HEAD only, the default) or \"any\""
                                        " (uploads too: the review fails it unless accepted)"))
        hub_methods = "read"
    labels = need("labels", dict, {})
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or not isinstance(value, str) or not _LABEL_VALUE.match(value):
            problems.append((f"labels.{key}", "label keys and values must be lowercase letters, digits, _ or -"
                                              " (keys start with a letter, at most 63 characters)"))
    policy = need("access_policy_id", str)
    if policy is not None and not _POLICY_ID.match(policy):
        problems.append(("access_policy_id", f"{policy!r} must be the numeric access policy id"
                                             " (gcloud access-context-manager policies list)"))
    if policy is not None and egress_mode is EgressMode.OPEN:
        problems.append(("access_policy_id", "a perimeter needs egress_mode = \"proxy\"; remove one of them"))
    kms_key = need("kms_key", str)
    if kms_key is not None and not _KMS_KEY.match(kms_key):
        problems.append(("kms_key", "must be projects/P/locations/L/keyRings/R/cryptoKeys/K"))
    if kms_key is not None and region and f"/locations/{region}/" not in kms_key:
        problems.append(("kms_key", f"the key must live in the region {region!r} (Vertex AI and the buckets"
                                    " use regional keys)"))
    replicas = need("secret_replica_locations", list, [])
    for loc in replicas:
        if not isinstance(loc, str) or not _LOCATION.match(loc):
            problems.append(("secret_replica_locations", f"{loc!r} is not a location like \"us-central1\""))
    if len(set(replicas)) != len(replicas):
        problems.append(("secret_replica_locations", "list each location once"))
    rotation = need("token_rotation_days", int, 90)
    if not 1 <= rotation <= 365:
        problems.append(("token_rotation_days", f"{rotation} is out of range; use 1 to 365 days"))
    image = need("training_image", str, DEFAULT_TRAINING_IMAGE)
    trusted = need("trusted_image_registries", list, list(DEFAULT_TRUSTED_REGISTRIES))
    for entry in trusted:
        why = registry_entry_problem(entry)
        if why:
            problems.append(("trusted_image_registries", why))
    if project_id and not any(registry_entry_problem(e) for e in trusted):
        why = image_problem(image, tuple(e.replace("{project}", project_id) for e in trusted))
        if why:
            problems.append(("training_image", why + "; pin it (image@sha256:...) or list its registry in"
                                                    " trusted_image_registries"))
    machine = need("machine_type", str, "g2-standard-8")
    accel = need("accelerator_type", str, "NVIDIA_L4") if raw.get("accelerator_type") != "" else None
    count = need("accelerator_count", int, 1)
    why = machine_problem(machine, accel, count)
    if why:
        problems.append(("machine_type/accelerator_type/accelerator_count", why))
    subnet = need("subnet_cidr", str, "10.8.0.0/24")
    proxy_only = need("proxy_only_cidr", str, "10.9.0.0/23")
    nets = []
    for name, cidr in (("subnet_cidr", subnet), ("proxy_only_cidr", proxy_only)):
        try:
            net = ipaddress.ip_network(cidr)
            if not net.is_private or net.version != 4:
                raise ValueError
            nets.append(net)
        except ValueError:
            problems.append((name, f"{cidr!r} must be a private IPv4 range like 10.8.0.0/24"))
    if len(nets) == 2 and nets[0].overlaps(nets[1]):
        problems.append(("proxy_only_cidr", "overlaps subnet_cidr; pick disjoint ranges"))
    if len(nets) == 2 and nets[0].num_addresses < 32:
        problems.append(("subnet_cidr", "needs at least a /27: one half for the PSC interface, one for the proxy"))
    number = need("project_number", str)
    if number is not None and not number.isdigit():
        problems.append(("project_number", "must be digits"))
    if project_id and prefix and len(f"{project_id}-{prefix}-artifacts") > 63:
        problems.append(("prefix", "bucket names ({project_id}-{prefix}-artifacts) would exceed 63 characters;"
                                   " shorten the prefix"))

    secret_keys = need("secret_kms_keys", dict, {})
    for loc, key in secret_keys.items():
        m = _KMS_KEY.match(key) if isinstance(key, str) else None
        if not m or f"/locations/{loc}/" not in key:
            problems.append((f"secret_kms_keys.{loc}", f"{key!r} must be projects/P/locations/{loc}/keyRings/R/"
                                                       "cryptoKeys/K: a replica's key lives in its location"))
        elif loc not in (replicas or [region]):
            problems.append((f"secret_kms_keys.{loc}", f"{loc} is not a replica location"
                                                       " (secret_replica_locations)"))
    if kms_key is not None:
        for loc in (replicas or [region]):
            if loc != region and loc not in secret_keys:
                problems.append(("secret_kms_keys", f"the secret replica in {loc} needs a key in {loc} (Secret"
                                                    f" Manager: each replica's key must be in its location); add"
                                                    f" secret_kms_keys = {{ {loc} = \"projects/P/locations/{loc}/"
                                                    "keyRings/R/cryptoKeys/K\" }"))
    elif secret_keys:
        problems.append(("secret_kms_keys", "set kms_key too (CMEK is all or nothing)"))
    dry_run = need("perimeter_dry_run", bool, True)
    ingress = need("perimeter_ingress_identities", list, [])
    for ident in ingress:
        if not isinstance(ident, str) or not _MEMBER.match(ident):
            problems.append(("perimeter_ingress_identities", f"{ident!r} must be user:, group:, serviceAccount:,"
                                                             " principal:// or principalSet:// (VPC Service Controls"
                                                             " ingress identities)"))
    if policy is not None and not dry_run and not ingress:
        problems.append(("perimeter_ingress_identities", "an enforced perimeter (perimeter_dry_run = false) denies"
                                                         " everyone outside it, Terraform included: list the"
                                                         " deployer and the platform admins"))
    image_projects = need("perimeter_image_projects", list, [])
    for proj in image_projects:
        if not isinstance(proj, str) or not re.fullmatch(r"projects/[0-9]{6,20}", proj):
            problems.append(("perimeter_image_projects", f"{proj!r} must be projects/NUMBER (the registry project's"
                                                         " number, as a dry-run violation log names it)"))
    if policy is None and ("perimeter_dry_run" in raw or ingress or image_projects):
        problems.append(("access_policy_id", "perimeter settings need access_policy_id"))
    publishers = need("publishers", list, ["submitter"])
    for who in publishers:
        if not isinstance(who, str) or not (who == "submitter" or _MEMBER.match(who)):
            problems.append(("publishers", f"{who!r} must be \"submitter\" or an IAM member (user:, group:,"
                                           " serviceAccount:, principal://, principalSet://)"))
        elif publishers.count(who) > 1:
            problems.append(("publishers", f"{who!r} is listed twice"))
        elif who == f"serviceAccount:{prefix}-trainer@{project_id}.iam.gserviceaccount.com":
            problems.append(("publishers", "the trainer runs whatever a job runs: it must never reach the write"
                                           " token; publish from the submitter or a person"))
    state_bucket = need("state_bucket", str)
    token_write_only = need("token_write_only", bool, False)
    allow: dict[str, list[str]] = {}
    for name, kind in (("allow_models", "model"), ("allow_datasets", "dataset")):
        entries = need(name, list, [])
        allow[name] = []
        for entry in entries:
            why = allow_entry_problem(entry, kind)
            if why:
                problems.append((name, why))
            elif entry in allow[name]:
                problems.append((name, f"{entry!r} is listed twice"))
            else:
                allow[name].append(entry)

    if egress_mode is EgressMode.PROXY and (allow["allow_models"] or allow["allow_datasets"]):
        from stacks.egress_rules import AllowlistTooLarge, proxy_rules
        try:
            proxy_rules(tuple(allow["allow_models"]), tuple(allow["allow_datasets"]), all_hosts_list="-",
                        content_hosts_list="-")
        except AllowlistTooLarge as exc:
            problems.append(("allow_models/allow_datasets", f"{exc.message}; {exc.fix}"))
    teams = _parse_teams(raw.get("teams"), problems, project_id=project_id, prefix=prefix, egress_mode=egress_mode,
                         nets=nets, env_allow=allow, env_publishers_set="publishers" in raw)
    if problems:
        raise ConfigError(source, problems)
    return Settings(
        env=env, project_id=project_id, region=region, prefix=prefix, egress_mode=egress_mode, labels=dict(labels),
        access_policy_id=policy, kms_key=kms_key, secret_replica_locations=tuple(replicas),
        token_rotation_days=rotation, training_image=image, machine_type=machine, accelerator_type=accel,
        accelerator_count=count, subnet_cidr=subnet, proxy_only_cidr=proxy_only, project_number=number,
        state_bucket=state_bucket, token_write_only=token_write_only,
        allow_models=tuple(allow["allow_models"]), allow_datasets=tuple(allow["allow_datasets"]),
        trusted_image_registries=tuple(trusted), secret_kms_keys=dict(secret_keys),
        perimeter_dry_run=dry_run, perimeter_ingress_identities=tuple(ingress),
        perimeter_image_projects=tuple(dict.fromkeys(image_projects)),
        publishers=tuple(dict.fromkeys(publishers)), teams=tuple(teams), hub_methods=hub_methods,
    )


def _parse_teams(raw, problems: list, *, project_id: str, prefix: str, egress_mode: EgressMode, nets: list,
                 env_allow: dict, env_publishers_set: bool) -> list[Team]:
    """`[teams.<name>]` tables. Names short enough for every per-team resource name; subnets private, disjoint from
    each other and from the environment's ranges; the allowlists of all teams within one proxy policy's limits."""
    if raw is None:
        return []
    if not isinstance(raw, dict) or not raw:
        problems.append(("teams", "must be tables: [teams.NAME] with submitters, allow_models, ..."))
        return []
    if env_allow.get("allow_models") or env_allow.get("allow_datasets") or env_publishers_set:
        problems.append(("teams", "with teams, allow_models, allow_datasets and publishers belong to each team:"
                                  " move them into [teams.NAME]"))
    teams, subnets = [], []
    projects: dict[str, str] = {}
    for name, t in raw.items():
        where = f"teams.{name}"
        if not isinstance(t, dict):
            problems.append((where, "must be a table"))
            continue
        if not _TEAM.match(name):
            problems.append((where, f"{name!r}: a team name is 2-10 lowercase letters or digits, starting with a"
                                    " letter (it goes into every resource name of the team)"))
            continue
        for unknown in sorted(set(t) - TEAM_FIELDS):
            problems.append((f"{where}.{unknown}", f"unknown field; known: {', '.join(sorted(TEAM_FIELDS))}"))
        if prefix and len(f"{prefix}-{name}-submitter") > 30:
            problems.append((where, f"service account ids ({prefix}-{name}-submitter) would exceed 30 characters;"
                                    " shorten the team name or the prefix"))
        if project_id and prefix and len(f"{project_id}-{prefix}-{name}-artifacts") > 63:
            problems.append((where, "bucket names would exceed 63 characters; shorten the team name"))

        team_project = t.get("project_id")
        if team_project is None:
            problems.append((f"{where}.project_id", "a team is a project: add `project_id = \"...\"`, an existing"
                                                    " project for the team's jobs, secrets, accounts and buckets"
                                                    " (README, \"Teams\")"))
            team_project = ""
        elif not isinstance(team_project, str) or not _PROJECT_ID.match(team_project):
            problems.append((f"{where}.project_id", f"{team_project!r} is not a valid project id: 6-30 lowercase"
                                                    " letters, digits or hyphens, starting with a letter and not"
                                                    " ending with a hyphen"))
            team_project = ""
        elif team_project == project_id:
            problems.append((f"{where}.project_id", f"{team_project} is the environment's project (the Shared VPC"
                                                    " host: network, proxy, CA, perimeter); give the team a project"
                                                    " of its own"))
        elif team_project in projects:
            problems.append((f"{where}.project_id", f"{team_project} is also team {projects[team_project]}'s"
                                                    " project; every team needs a project of its own (Google"
                                                    " enforces IAM per project)"))
        else:
            projects[team_project] = name
        team_number = t.get("project_number")
        if team_number is not None and (not isinstance(team_number, str) or not team_number.isdigit()):
            problems.append((f"{where}.project_number", "must be digits, as a string"))
            team_number = None

        def members(key: str, default: list) -> list[str]:
            value = t.get(key, default)
            if not isinstance(value, list):
                problems.append((f"{where}.{key}", "must be a list of IAM members"))
                return []
            for m in value:
                if not isinstance(m, str) or not (m == "submitter" and key == "publishers" or _MEMBER.match(m)):
                    problems.append((f"{where}.{key}", f"{m!r} must be an IAM member (user:, group:,"
                                                       " serviceAccount:, principal://, principalSet://)"
                                                       + (" or \"submitter\"" if key == "publishers" else "")))
            return [m for m in value if isinstance(m, str)]
        submitters = members("submitters", [])
        if not submitters:
            problems.append((f"{where}.submitters", "list who submits for the team (people, groups, or CI through"
                                                    " Workload Identity Federation: principalSet://...)"))
        publishers = members("publishers", ["submitter"])
        allow: dict[str, list[str]] = {}
        for key, kind in (("allow_models", "model"), ("allow_datasets", "dataset")):
            entries = t.get(key, [])
            allow[key] = []
            for entry in entries if isinstance(entries, list) else []:
                why = allow_entry_problem(entry, kind)
                if why:
                    problems.append((f"{where}.{key}", why))
                elif entry not in allow[key]:
                    allow[key].append(entry)
        subnet = t.get("subnet_cidr", "")
        if egress_mode is EgressMode.PROXY:
            try:
                net = ipaddress.ip_network(subnet)
                if not net.is_private or net.version != 4 or net.prefixlen > 28:
                    raise ValueError
                clash = [n for n in nets + subnets if n.overlaps(net)]
                if clash:
                    problems.append((f"{where}.subnet_cidr", f"{subnet} overlaps {clash[0]}; give every team a"
                                                             " range of its own, outside subnet_cidr and"
                                                             " proxy_only_cidr"))
                subnets.append(net)
            except ValueError:
                problems.append((f"{where}.subnet_cidr", f"{subnet!r}: a private IPv4 range of at least /28 for the"
                                                         " team's network attachment (its jobs' source addresses"
                                                         " at the proxy)"))
        machine, accel, count = t.get("machine_type"), t.get("accelerator_type"), t.get("accelerator_count")
        if machine is not None and accel is None and count is None:   # a bare machine type brings its own GPUs
            from stacks.facts import MACHINES
            shape = MACHINES.get(machine)
            accel = shape.accelerator_type if shape else None
            count = shape.accelerator_counts[0] if shape and shape.accelerator_counts else 0
        if machine is not None:
            why = machine_problem(machine, accel or None, count or 0)
            if why:
                problems.append((f"{where}.machine_type", why))
        teams.append(Team(name=name, project_id=str(team_project or ""), project_number=team_number,
                          subnet_cidr=str(subnet), submitters=tuple(dict.fromkeys(submitters)),
                          publishers=tuple(dict.fromkeys(publishers)), allow_models=tuple(allow["allow_models"]),
                          allow_datasets=tuple(allow["allow_datasets"]), machine_type=machine,
                          accelerator_type=accel, accelerator_count=count))
    if egress_mode is EgressMode.PROXY and teams:
        from stacks.egress_rules import AllowlistTooLarge, team_rules
        try:
            team_rules(teams, all_hosts_list="-", content_hosts_list="-")
        except AllowlistTooLarge as exc:
            problems.append(("teams", f"{exc.message}; {exc.fix}"))
    return teams


def known_envs(config_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (config_dir or CONFIG_DIR).glob("*.toml"))

"""The teams' isolation matrix: what one team's principals, and principals of no team, may do to another team's
resources, judged by permission (review.roles), and the teams' source ranges by CIDR arithmetic.

A team is a project (README, "Teams"): its buckets, secrets, service accounts, Vertex AI jobs, logs, repositories
and network attachment live in its own project; its subnet lives in the host project. A grant reaches a team when
its target is one of those resources, the team's project, or a folder or organization (assumed to hold every
project); a grant on the host project reaches every team's subnet. Then:
- a principal of one team holding anything on another team's resources fails, naming both teams and the
  permissions it holds (a role not in the table is UNKNOWN and fails too);
- a principal of no team fails when its role holds a permission in TEAM_DATA on a team's resources (reads or
  writes its objects, reads its token, runs, reads or cancels its jobs, reads its logs, acts as its accounts, uses
  its subnet, pulls its images, or changes who may); a platform-wide role that holds none (monitoring, log
  writing) passes;
- every team's source range is disjoint from every other's, and every proxy rule named for a team matches sources
  inside that team's range only: `ipaddress` overlap and containment over whole networks, never a sample address.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from review import roles as R
from review.graph import Grant, grants
from review.plan import Plan, unresolved

# What reads, changes, runs, uses or impersonates what belongs to a team (review.roles' permission names).
TEAM_DATA = frozenset({
    "storage.objects.get", "storage.objects.list", "storage.objects.create", "storage.objects.delete",
    "storage.objects.update", "storage.buckets.setIamPolicy", "storage.buckets.update", "storage.buckets.delete",
    "storage.managedFolders.setIamPolicy",
    R.ACCESS, *R.VERSION_TAMPER, R.SECRET_SET_IAM, "secretmanager.secrets.delete", "secretmanager.secrets.update",
    *R.IMPERSONATE,
    "aiplatform.customJobs.create", R.JOB_READ, "aiplatform.customJobs.list", "aiplatform.customJobs.cancel",
    "logging.logEntries.list", R.PRIVATE_LOG_LIST,
    R.SUBNET_USE,
    R.IMAGE_READ, *R.IMAGE_WRITE,
    *R.HIERARCHY_SET_IAM, R.ROLE_UPDATE,
})


@dataclass
class TeamScope:
    """One team's resources in a plan, by kind, and who belongs to it."""
    name: str
    project: str
    buckets: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)       # emails
    subnets: set[str] = field(default_factory=set)        # subnetwork names (in the host project)
    repositories: set[str] = field(default_factory=set)
    topics: set[str] = field(default_factory=set)
    source_range: str = ""
    members: dict[str, str] = field(default_factory=dict)  # member -> its role in the team

    def belongs(self, member: str) -> str | None:
        """The member's role in the team: its identities and people, any account of its project, its project's
        service agents; None when it is not the team's."""
        if member in self.members:
            return self.members[member]
        if self.project and member.endswith(f"@{self.project}.iam.gserviceaccount.com"):
            return "account of its project"
        if self.project and f"(number of {self.project})@" in member:
            return "service agent of its project"
        return None


def _values(plan: Plan, rtype: str) -> list[dict]:
    return [plan.resolved(r) for r in plan.of_type(rtype)]


def _project(plan: Plan, v: dict) -> str:
    return str(v.get("project") or plan.default_project())


def scopes(plan: Plan, views: dict[str, Plan]) -> dict[str, TeamScope]:
    from review.plan import team_source_range
    from review.report import _team_members
    out = {}
    for name, view in views.items():
        project = str(view.output("project_id") or "")
        t = TeamScope(name=name, project=project, members=_team_members(view))
        for key in ("staging_bucket", "artifacts_bucket", "mirror_bucket"):
            if view.output(key):
                t.buckets.add(str(view.output(key)).removeprefix("gs://"))
        for key in ("token_secret", "write_token_secret"):
            if view.output(key):
                t.secrets.add(str(view.output(key)).rstrip("/").rsplit("/", 1)[-1])
        for key in ("trainer_email", "submitter_email", "publisher_email"):
            if view.output(key):
                t.accounts.add(str(view.output(key)))
        for v in _values(plan, "google_storage_bucket"):
            if _project(plan, v) == project:
                t.buckets.add(str(v.get("name")))
        for v in _values(plan, "google_secret_manager_secret"):
            if _project(plan, v) == project:
                t.secrets.add(str(v.get("secret_id")))
        for v in _values(plan, "google_service_account"):
            if _project(plan, v) == project:
                t.accounts.add(f"{v.get('account_id')}@{project}.iam.gserviceaccount.com")
        for v in _values(plan, "google_artifact_registry_repository"):
            if _project(plan, v) == project:
                t.repositories.add(str(v.get("repository_id")))
        for v in _values(plan, "google_pubsub_topic"):
            if _project(plan, v) == project:
                t.topics.add(str(v.get("name")))
        t.source_range = team_source_range(view)
        for v in _values(plan, "google_compute_subnetwork"):
            if t.source_range and v.get("ip_cidr_range") == t.source_range:
                t.subnets.add(str(v.get("name")))
        out[name] = t
    return out


def _reached(g: Grant, teams: dict[str, TeamScope], host: str) -> list[tuple[str, str]]:
    """(team, what) for every team whose resources the grant's target is or holds."""
    kind, target = g.scope, g.target
    if kind in ("folder", "organization"):
        return [(n, f"everything (a grant on {kind} {target})") for n in teams]
    if unresolved(target):      # not known offline (a variable, a value known after apply): it may be any team's
        return [(n, f"{kind} {target}, not known offline: it may be this team's") for n in teams]
    hits = []
    for n, t in teams.items():
        what = None
        if kind == "project" and target == t.project:
            what = f"its project {target}: its jobs, logs, buckets, secrets, accounts and network attachment"
        elif kind == "project" and target == host and t.subnets:
            what = f"its subnet {', '.join(sorted(t.subnets))} (through the host project {host})"
        elif kind == "bucket" and target in t.buckets:
            what = f"bucket {target}"
        elif kind == "secret" and target in t.secrets:
            what = f"secret {target}"
        elif kind == "serviceAccount" and target in t.accounts:
            what = f"service account {target}"
        elif kind == "compute_subnetwork" and target in t.subnets:
            what = f"subnet {target} (its jobs' source range {t.source_range})"
        elif kind == "artifactRegistry" and target in t.repositories:
            what = f"repository {target}"
        elif kind == "pubsub_topic" and target in t.topics:
            what = f"topic {target}"
        if what:
            hits.append((n, what))
    return hits


def _ranges(plan: Plan, teams: dict[str, TeamScope]) -> list[dict]:
    """Problems with the teams' source ranges: overlaps between teams, and proxy rules named for a team that
    match sources outside its range (whole-network arithmetic)."""
    problems = []
    nets = {}
    for n, t in teams.items():
        try:
            nets[n] = ipaddress.ip_network(t.source_range) if t.source_range else None
        except ValueError:
            nets[n] = None
    names = sorted(teams)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if nets[a] is not None and nets[b] is not None and nets[a].overlaps(nets[b]):
                problems.append({"teams": [a, b], "detail": f"team `{a}`'s source range {nets[a]} overlaps team"
                                                            f" `{b}`'s {nets[b]}: the proxy cannot tell their jobs"
                                                            " apart"})
    for r in plan.of_type("google_network_security_gateway_security_policy_rule"):
        v = plan.resolved(r)
        rule, matcher = str(v.get("name") or ""), v.get("session_matcher")
        owner = next((n for n in names if rule.startswith(f"{n}-")), None)
        if owner is None or str(v.get("basic_profile")) != "ALLOW":
            continue
        if unresolved(matcher):
            problems.append({"teams": [owner], "detail": f"rule {rule}: its session matcher is not known offline"
                                                         " (UNKNOWN)", "address": r.address})
            continue
        found = re.findall(r"inIpRange\(\s*source\.ip\s*,\s*'([^']+)'\s*\)", str(matcher))
        own = nets.get(owner)
        if not found:
            problems.append({"teams": [owner], "detail": f"rule {rule} of team `{owner}` matches any source: every"
                                                         " team's jobs may use it", "address": r.address})
        for cidr in found:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                problems.append({"teams": [owner], "detail": f"rule {rule}: {cidr!r} is not a range",
                                 "address": r.address})
                continue
            if own is None or net.version != own.version or not net.subnet_of(own):  # type: ignore[arg-type]
                problems.append({"teams": [owner], "detail": f"rule {rule} of team `{owner}` matches {net}, not"
                                                             f" inside its range {own}", "address": r.address})
            for other in names:
                o = nets.get(other)
                if other != owner and o is not None and net.overlaps(o):
                    problems.append({"teams": [owner, other],
                                     "detail": f"rule {rule} of team `{owner}` matches {net}, which overlaps team"
                                               f" `{other}`'s range {o}: `{other}`'s jobs may use it",
                                     "address": r.address})
    return problems


SINK_TYPES = ("google_logging_project_sink", "google_logging_folder_sink", "google_logging_organization_sink",
              "google_logging_billing_account_sink")


def _sinks(plan: Plan, teams: dict[str, TeamScope]) -> list[tuple[dict, str | None]]:
    """Log sinks that export a team's logs (its jobs' output) somewhere other than the team's own resources: the
    same data `logging.logEntries.list` reads, delivered by the sink's writer identity. (row, the receiving team or
    None for a destination of no team (another project, or one not known offline)). A filter is not judged (every
    sink may route job logs); a sink on a folder, organization or billing account routes every team's."""
    out: list[tuple[dict, str | None]] = []
    for r in plan.of_type(*SINK_TYPES):
        v = plan.resolved(r)
        if v.get("disabled") is True:
            continue
        if r.type == "google_logging_project_sink":
            source = str(v.get("project") or plan.default_project())
            sources = [n for n, t in teams.items() if t.project == source] if not unresolved(source) else list(teams)
        else:
            sources = list(teams)
        dest = str(v.get("destination") or "")
        bucket = re.match(r"storage\.googleapis\.com/([^/]+)$", dest)
        project = re.search(r"/projects/([^/]+)/", dest + "/")
        for team in sources:
            if unresolved(dest):
                receiver, known = None, False
            else:
                receiver = next((n for n, t in teams.items() if (bucket and bucket.group(1) in t.buckets) or
                                 (project and project.group(1) == t.project)), None)
                known = True
            if receiver == team:
                continue        # the team's own bucket, topic, dataset or log bucket
            where = (f"team `{receiver}`'s {dest}" if receiver else f"{dest} (no team's" +
                     (")" if known else "; not known offline)"))
            out.append(({"principal": f"resource:{r.address}", "team": receiver or "(none)", "as": "log sink",
                         "to_team": team, "what": f"its logs (its jobs' output), exported to {where}",
                         "role": "(log sink)", "permissions": ["logging.logEntries.list (exported)"],
                         "address": r.address}, receiver))
    return out


def _attachment_subnets(plan: Plan, views: dict[str, Plan], teams: dict[str, TeamScope]) -> list[dict]:
    """A team's network attachment reserves its jobs' addresses in each subnet it lists: one subnet, the team's
    own. Another team's subnet there gives the team's jobs that team's source range at the proxy; a second subnet
    or one not known offline is a range the review did not judge."""
    problems = []
    for name, view in views.items():
        ref = str((view.outputs.get("network_attachment") or {}).get("value") or "")
        m = re.search(r"google_compute_network_attachment\.([^.}]+)\.", ref)
        att = plan.get("google_compute_network_attachment", m.group(1)) if m else None
        if att is None or name not in teams:
            continue
        raw = att.values.get("subnetworks") or []
        raw = raw if isinstance(raw, list) else [raw]
        # The synthesized form holds the references in the value; a `terraform show -json` plan, in the configuration.
        literal = [x for x in raw if not re.search(r"google_compute_subnetwork\.", str(x))]
        found = [re.search(r"google_compute_subnetwork\.([^.}\s]+)", str(x)) for x in raw]
        found += [re.search(r"google_compute_subnetwork\.([^.}\s]+)", ref) for arg, ref in att.config_refs
                  if arg.startswith("subnetworks")]
        keys = {x.group(1) for x in found if x}
        names = {str(plan.resolved(sub).get("name")) for k in keys
                 if (sub := plan.get("google_compute_subnetwork", k)) is not None}
        others = sorted({n for n, t in teams.items() if n != name and t.subnets & names})
        if others:
            problems.append({"teams": [name, *others], "address": att.address,
                             "detail": f"team `{name}`'s network attachment lists team"
                                       f" {', '.join(f'`{o}`' for o in others)}'s subnet: `{name}`'s jobs may take"
                                       f" that range at the proxy"})
        elif literal or len(keys) != 1 or names != teams[name].subnets:
            problems.append({"teams": [name], "address": att.address,
                             "detail": f"team `{name}`'s network attachment lists {raw!r}, not its one subnet"
                                       f" {sorted(teams[name].subnets)}: its jobs' source range is not the one"
                                       " judged (UNKNOWN)"})
    return problems


def matrix(plan: Plan, views: dict[str, Plan]) -> dict:
    """rows: every (principal, team reached, what, permissions) of a grant on a team's resources; cross_team: those
    of one team on another's; no_team: those of principals of no team holding TEAM_DATA permissions; unknown: grants
    on a team's resources whose role (or member) cannot be judged offline; ranges: the source range problems."""
    teams = scopes(plan, views)
    host = str(next(iter(views.values())).output("host_project_id") or plan.default_project())
    rows, cross, no_team, unknown = [], [], [], []
    for g in grants(plan):
        for team, what in _reached(g, teams, host):
            mine = teams[team].belongs(g.member)
            theirs = next(((n, role) for n, t in teams.items() if n != team
                           and (role := t.belongs(g.member)) is not None), None)
            perms = sorted(g.perms) if g.perms is not None else None
            data = sorted(set(g.perms) & TEAM_DATA) if g.perms is not None else None
            row = {"principal": g.member, "team": theirs[0] if theirs and not mine else (team if mine else "(none)"),
                   "as": (mine or (theirs[1] if theirs else "")), "to_team": team, "what": what, "role": g.role,
                   "permissions": data if data is not None else ["(role not in the table: UNKNOWN)"],
                   "address": g.address}
            rows.append(row)
            if mine:
                continue
            if g.unknown:
                unknown.append(row | {"why": f"not known offline: {', '.join(g.unknown)}"})
            if theirs:
                cross.append(row | {"from_team": theirs[0], "held": perms if perms is not None else
                                    ["(role not in the table: UNKNOWN)"]})
            elif data is None or data:
                no_team.append(row)
    for row, receiver in _sinks(plan, teams):
        rows.append(row)
        if receiver:
            cross.append(row | {"from_team": receiver, "held": row["permissions"]})
        else:
            no_team.append(row)
    key = lambda r: (r["principal"], r["to_team"], r["what"], r["role"], r["address"])  # noqa: E731
    return {"teams": {n: {"project": t.project, "source_range": t.source_range} for n, t in teams.items()},
            "host_project": host, "rows": sorted(rows, key=key), "cross_team": sorted(cross, key=key),
            "no_team": sorted(no_team, key=key), "unknown": sorted(unknown, key=key),
            "ranges": _ranges(plan, teams) + _attachment_subnets(plan, views, teams)}


def describe(c: dict) -> str:
    return (f"team `{c['from_team']}`'s {c['as']} `{c['principal']}` holds {c['role']} on team `{c['to_team']}`'s"
            f" {c['what']} ({', '.join(c['held']) or 'no listed permission'}) (`{c['address']}`)")


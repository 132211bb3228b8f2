"""Read what the stacks declare, from either form a reviewer or the local cloud may have at hand:

- the synthesized `cdktf.out/stacks/<stack>/cdk.tf.json` (Terraform JSON configuration, with `${...}` references), or
- a `terraform show -json` plan (`planned_values` with concrete values, `configuration` with references for the
  values only known after apply).

Both become the same `Plan`: resources with their values, references resolved to the concrete names the provider
will compute (a service account's email, a secret's id, a bucket's name). What cannot be resolved offline stays
visible as such (`${var.x}`, `${data...}`, "(known after apply: ...)"): `unresolved()` tells, and the review reports
it as UNKNOWN rather than guessing. Data sources with fixed semantics (`google_iam_policy`, the Cloud Storage
service agent, the project) are evaluated; module calls in a synthesized stack are listed, since their resources
are not in it. One reader, used by the local cloud (to create what the stacks declare) and by the security review.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from stacks.errors import UsageError

REF = re.compile(r"\$\{(data\.)?([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.([a-z0-9_]+)\}")
UNRESOLVED = re.compile(r"\$\{|\(unknown: |\(known after apply")


def unresolved(value) -> bool:
    """True when a value (or anything inside it) is not known offline: a Terraform expression, a variable, a local,
    a data source or module output, or a value only known after apply."""
    if value is None:
        return True
    if isinstance(value, str):
        return bool(UNRESOLVED.search(value))
    if isinstance(value, list):
        return any(unresolved(x) for x in value)
    if isinstance(value, dict):
        return any(unresolved(x) for k, x in value.items() if k != "//")
    return False


@dataclass
class Resource:
    type: str
    name: str
    values: dict
    path: str = ""                 # construct path (synth) or address (plan)
    module: str = ""               # "module.x" for a resource inside a module (plan form)
    config_refs: tuple = ()        # (argument path, reference) from the plan's configuration (plan form)

    @property
    def address(self) -> str:
        return f"{self.module + '.' if self.module else ''}{self.type}.{self.name}"


@dataclass
class Plan:
    stack: str
    source: str                    # "synth" or "plan"
    resources: list[Resource] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    providers: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)        # (type, name) -> values of data sources (synth form)
    modules: dict = field(default_factory=dict)     # module calls whose resources this plan does not hold
    ephemeral: dict = field(default_factory=dict)   # (type, name) -> values of ephemeral resources (synth form)
    locals: dict = field(default_factory=dict)      # name -> value (synth form)
    sections: frozenset = frozenset()               # top-level keys of the configuration (synth form)

    def of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources if r.type in types]

    def get(self, type_: str, name: str) -> Resource | None:
        # An index by (type, name), rebuilt when resources were added: references are resolved by the hundred
        # thousand in an environment with many teams.
        index = self.__dict__.get("_index")
        if index is None or index[0] != len(self.resources):
            table: dict = {}
            for r in self.resources:
                table.setdefault((r.type, r.name), r)
            index = self.__dict__["_index"] = (len(self.resources), table)
        return index[1].get((type_, name))

    # What the provider computes from the arguments: enough for the attributes IAM and naming refer to.
    def attribute(self, type_: str, name: str, attr: str) -> str:
        r = self.get(type_, name)
        if r is None:
            return f"(unknown: {type_}.{name}.{attr})"
        if r.type == "google_project_iam_custom_role" and attr in ("id", "name"):
            v = self.resolve(r.values)
            return f"projects/{v.get('project') or self.default_project()}/roles/{v.get('role_id')}"
        if r.type == "google_organization_iam_custom_role" and attr in ("id", "name"):
            v = self.resolve(r.values)
            return f"organizations/{v.get('org_id')}/roles/{v.get('role_id')}"
        v = r.values
        if attr in v and isinstance(v[attr], (str, int, float)) and not REF.search(str(v[attr])):
            return str(v[attr])
        project = self.resolve(v.get("project", "")) or self.default_project()
        if type_ == "google_service_account":
            email = f"{v.get('account_id')}@{project}.iam.gserviceaccount.com"
            return {"email": email, "member": f"serviceAccount:{email}", "name": f"projects/{project}/serviceAccounts/"
                    f"{email}", "id": f"projects/{project}/serviceAccounts/{email}"}.get(attr, _unknown(type_, name, attr))
        if type_ == "google_secret_manager_secret":
            full = f"projects/{project}/secrets/{self.resolve(v.get('secret_id', ''))}"
            return {"id": full, "name": full, "secret_id": self.resolve(v.get("secret_id", "")),
                    "project": project}.get(attr, _unknown(type_, name, attr))
        if type_ == "google_storage_bucket":
            bucket = self.resolve(v.get("name", ""))
            return {"name": bucket, "id": bucket, "url": f"gs://{bucket}"}.get(attr, _unknown(type_, name, attr))
        if type_ == "google_pubsub_topic":
            topic = self.resolve(v.get("name", ""))
            return {"name": topic, "id": f"projects/{project}/topics/{topic}"}.get(attr, _unknown(type_, name, attr))
        if type_ in ("google_compute_network", "google_compute_subnetwork", "google_compute_network_attachment"):
            kind = {"google_compute_network": "networks", "google_compute_subnetwork": "subnetworks",
                    "google_compute_network_attachment": "networkAttachments"}[type_]
            where = "global" if kind == "networks" else f"regions/{self.resolve(v.get('region', ''))}"
            full = f"projects/{project}/{where}/{kind}/{self.resolve(v.get('name', ''))}"
            return {"id": full, "self_link": full, "name": self.resolve(v.get("name", ""))}.get(
                attr, _unknown(type_, name, attr))
        if type_ == "google_privateca_ca_pool":
            pool = self.resolve(v.get("name", ""))
            full = f"projects/{project}/locations/{self.resolve(v.get('location', ''))}/caPools/{pool}"
            return {"id": full, "name": pool}.get(attr, _unknown(type_, name, attr))
        if type_ == "google_project_service_identity":
            if attr in ("member", "email"):
                svc = str(v.get("service", "")).split(".")[0]
                # Each project has its own agent: the project's id stands in for its number (known after apply).
                email = f"service-(number of {project})@gcp-sa-{svc}.iam.gserviceaccount.com"
                return f"serviceAccount:{email}" if attr == "member" else email
        return _unknown(type_, name, attr)

    def data_attribute(self, type_: str, name: str, attr: str, raw: str) -> str:
        """Data sources whose result is fixed by their arguments; anything else stays as written (unresolved)."""
        v = self.data.get((type_, name))
        if v is None:
            return raw
        v = self.resolve(v)
        project = v.get("project") or self.default_project()
        if type_ == "google_iam_policy" and attr == "policy_data":
            bindings = v.get("binding") or []
            bindings = [bindings] if isinstance(bindings, dict) else bindings
            policy = {"bindings": [{"role": b.get("role"), "members": b.get("members") or []} for b in bindings]}
            return raw if unresolved(policy) or v.get("audit_config") else json.dumps(policy, sort_keys=True)
        if type_ == "google_storage_project_service_account" and attr in ("email_address", "member"):
            email = f"service-(number of {project})@gs-project-accounts.iam.gserviceaccount.com"
            return email if attr == "email_address" else f"serviceAccount:{email}"
        if type_ == "google_project" and attr in ("number", "project_id"):
            # The data source names its project by project_id; its number (known after apply) stands as
            # "(number of ID)", as the service agents' do, so a grant on it is judged on that project.
            pid = str(v.get("project_id") or project)
            return f"(number of {pid})" if attr == "number" else pid
        return raw

    def resolve(self, value):
        """Replace every `${type.name.attr}` / `${data.type.name.attr}` in a string (recursively in lists and
        dicts); what cannot be resolved is left as written."""
        if isinstance(value, str):
            return REF.sub(lambda m: self.data_attribute(m.group(2), m.group(3), m.group(4), m.group(0)) if m.group(1)
                           else self.attribute(m.group(2), m.group(3), m.group(4)), value)
        if isinstance(value, list):
            return [self.resolve(x) for x in value]
        if isinstance(value, dict):
            return {k: self.resolve(x) for k, x in value.items() if k != "//"}
        return value

    def output(self, name: str) -> str | None:
        """An output's value with references resolved (synth: `output.X.value`; plan: planned or referenced)."""
        out = self.outputs.get(name)
        if out is None:
            return None
        value = out.get("value") if isinstance(out, dict) else out
        return self.resolve(value) if value is not None else None

    def default_project(self) -> str:
        google = self.providers.get("google")
        if isinstance(google, list) and google:
            google = google[0]
        return (google or {}).get("project", "") if isinstance(google, dict) else ""

    def resolved(self, r: Resource) -> dict:
        return self.resolve(r.values)


def _unknown(type_: str, name: str, attr: str) -> str:
    return f"(known after apply: {type_}.{name}.{attr})"


def from_synth(path: Path) -> Plan:
    data = _load_json(path)
    stack = ((data.get("//") or {}).get("metadata") or {}).get("stackName") or path.parent.name
    plan = Plan(stack=stack, source="synth", outputs=data.get("output", {}), providers=data.get("provider", {}),
                data={(t, n): v for t, by_name in (data.get("data") or {}).items() for n, v in by_name.items()},
                modules=dict(data.get("module") or {}),
                ephemeral={(t, n): v for t, by_name in (data.get("ephemeral") or {}).items()
                           for n, v in by_name.items()},
                locals=dict(data.get("locals") or {}), sections=frozenset(data))
    for type_, by_name in (data.get("resource") or {}).items():
        for name, values in by_name.items():
            meta = (values.get("//") or {}).get("metadata", {})
            plan.resources.append(Resource(type_, name, values, meta.get("path", "")))
    return plan


def from_show_json(path: Path) -> Plan:
    """`terraform show -json plan.out`: planned values win; references fill what is only known after apply."""
    data = _load_json(path)
    if "planned_values" not in data:
        raise UsageError(f"{path} is not a `terraform show -json` plan (no planned_values)",
                          "run `terraform plan -out plan.out && terraform show -json plan.out > plan.json`")
    config = {r["address"]: r for r in _walk(data.get("configuration", {}).get("root_module", {}), "resources")}
    providers = {}
    for key, p in (data.get("configuration", {}).get("provider_config") or {}).items():
        providers[p.get("name", key)] = {k: e.get("constant_value") for k, e in p.get("expressions", {}).items()}
    outputs = dict(data.get("planned_values", {}).get("outputs", {}))
    for name, out in (data.get("configuration", {}).get("root_module", {}).get("outputs") or {}).items():
        refs = (out.get("expression") or {}).get("references") or []
        if (outputs.get(name) or {}).get("value") is None and refs:
            outputs[name] = {"value": "${" + next((r for r in refs if r.count(".") == 2), refs[0]) + "}"}
        elif name not in outputs and "constant_value" in (out.get("expression") or {}):
            outputs[name] = {"value": out["expression"]["constant_value"]}
    plan = Plan(stack=path.stem, source="plan", outputs=outputs, providers=providers)
    for r in _walk(data["planned_values"].get("root_module", {}), "resources"):
        if r.get("mode", "managed") != "managed":
            if r.get("mode") == "data":
                refs = dict(_expr_refs(config.get(r["address"], {}).get("expressions") or {}))
                plan.data[(r["type"], r["name"])] = {**(r.get("values") or {}),
                                                     **{k: "${" + v + "}" for k, v in refs.items()}}
            continue
        values = dict(r.get("values") or {})
        for key, expr in (config.get(r["address"], {}).get("expressions") or {}).items():
            if values.get(key) is None and isinstance(expr, dict) and expr.get("references"):
                # A managed resource's attribute (type.name.attr) resolves like in the synthesized form; a data
                # source, variable, local or module output that is still unknown stays unresolved.
                refs = expr["references"]
                ref = next((x for x in refs if x.count(".") == 2 and not x.startswith(("data.", "var.", "local.",
                                                                                       "module."))), refs[0])
                values[key] = "${" + ref + "}"
        index = f"[{json.dumps(r['index'])}]" if "index" in r else ""
        module = r["address"].rsplit(f"{r['type']}.{r['name']}", 1)[0].rstrip(".")
        refs = tuple(_expr_refs(config.get(r["address"], {}).get("expressions") or {}))
        plan.resources.append(Resource(r["type"], r["name"] + index, values, r["address"], module, refs))
    for address, c in config.items():     # data sources read at apply time are in the configuration only
        if c.get("mode") == "data" and (c.get("type"), c.get("name")) not in plan.data:
            refs = dict(_expr_refs(c.get("expressions") or {}))
            consts = {k: e.get("constant_value") for k, e in (c.get("expressions") or {}).items()
                      if isinstance(e, dict) and "constant_value" in e}
            plan.data[(c["type"], c["name"])] = {**consts, **{k: "${" + v + "}" for k, v in refs.items()}}
    return plan


def _expr_refs(expr, path: str = ""):
    """(argument path, reference) for every reference in a configuration's expressions (nested blocks too)."""
    if isinstance(expr, list):
        for x in expr:
            yield from _expr_refs(x, path)
    elif isinstance(expr, dict):
        if "references" in expr or "constant_value" in expr:
            for ref in expr.get("references") or []:
                yield path, ref
        else:
            for k, x in expr.items():
                yield from _expr_refs(x, f"{path}.{k}" if path else k)


def _walk(module: dict, key: str):
    yield from module.get(key, [])
    for child in module.get("child_modules", []):
        yield from _walk(child, key)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", "run `make synth` (or pass --plan FILE)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          "regenerate it with `make synth` or `terraform show -json`") from None


def load(path: Path) -> Plan:
    data = _load_json(path)
    return from_show_json(path) if "planned_values" in data else from_synth(path)


def synthesized(outdir: Path, env: str) -> Path:
    return Path(outdir) / "stacks" / f"hfgate-{env}" / "cdk.tf.json"


def team_views(plan: Plan) -> dict[str, Plan]:
    """An environment with teams exports one contract per team (`team_<name>` outputs): one view of the plan per
    team, whose outputs are that team's contract, so every check judges the team's token, identities, buckets and
    allowlist. Without teams: the plan itself, under the name ""."""
    import dataclasses
    teams = {k.removeprefix("team_"): v for k, v in plan.outputs.items() if k.startswith("team_")}
    if not teams:
        return {"": plan}
    views = {}
    for name, out in sorted(teams.items()):
        value = out.get("value") if isinstance(out, dict) and "value" in out else out
        if not isinstance(value, dict):
            value = {}
        views[name] = dataclasses.replace(plan, outputs={k: {"value": v} for k, v in value.items()})
    return views


def team_source_range(view: Plan) -> str:
    """The team's jobs' source range at the proxy: the subnet of its network attachment (from the plan)."""
    ref = str((view.outputs.get("network_attachment") or {}).get("value") or "")
    m = re.search(r"google_compute_network_attachment\.([^.}]+)\.", ref)
    att = view.get("google_compute_network_attachment", m.group(1)) if m else None
    if att is None:
        return ""
    # The synthesized form holds the reference in the value; a `terraform show -json` plan, in the configuration.
    refs = json.dumps(att.values.get("subnetworks") or []) + " ".join(ref + "." for arg, ref in att.config_refs
                                                                      if arg.startswith("subnetworks"))
    sub = re.search(r"google_compute_subnetwork\.([^.}\s]+)\.", refs)
    subnet = view.get("google_compute_subnetwork", sub.group(1)) if sub else None
    return str(subnet.values.get("ip_cidr_range") or "") if subnet else ""

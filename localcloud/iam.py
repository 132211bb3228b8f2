"""Who may do what in the local cloud: one evaluator, called by every local service (Secret Manager, Vertex AI,
Cloud Logging, IAM Credentials, Cloud Storage through its authorizing front and the job mounts).

A call is allowed when a binding of the caller, on the resource or on anything above it, holds a role whose
permissions (review/roles.py's table, the same one the review reads; a custom role's own list) include the
permission the call needs. The hierarchy is Google's: a secret, bucket or service account belongs to a project;
a project may sit in a folder or an organization (when the plan declares one); `TOP` stands for the organization
the local cloud serves, so a grant there holds everywhere (the seed's platform admin). A role missing from the table
grants nothing (fail closed). Groups and conditions are not evaluated (README: what stays unenforced).

Resources are written `kind:id`, as the review writes them: `project:P`, `folder:F`, `organization:O`,
`secret:ID`, `bucket:NAME`, `serviceAccount:EMAIL`.
"""
from __future__ import annotations

import re
import zlib

from localcloud.state import Grants
from review import roles as R

TOP = "*"
PUBLIC = "allUsers"
AUTHENTICATED = "allAuthenticatedUsers"


class Iam:
    def __init__(self, grants: Grants, default_project: str, default_number: str = "") -> None:
        self.grants = grants
        self.default_project = default_project
        self.parents: dict[str, str] = {}                  # resource -> the node above it
        self.custom_roles: dict[str, frozenset[str]] = {}  # "projects/P/roles/ID" -> its permissions
        self.numbers: dict[str, str] = {}                  # project id -> project number
        if default_number:
            self.numbers[default_project] = default_number

    # the hierarchy ---------------------------------------------------------------------------------------------------
    def add_project(self, project_id: str, number: str = "", parent: str = "") -> None:
        if number:
            self.numbers[project_id] = number
        else:
            self.numbers.setdefault(project_id, "")
        if parent:
            self.parents[f"project:{project_id}"] = parent

    def place(self, resource: str, project: str | None) -> None:
        """`resource` belongs to `project` (by id or number)."""
        self.parents[resource] = f"project:{self.project_id(project or self.default_project)}"

    @property
    def projects(self) -> set[str]:
        return set(self.numbers) | {self.default_project}

    def project_id(self, id_or_number: str) -> str:
        """The project's id, given its id or its number (names in requests carry either)."""
        for pid, number in self.numbers.items():
            if id_or_number in (pid, number) and number:
                return pid
        return id_or_number

    def number(self, project: str) -> str:
        """The project's number (Vertex AI names resources with it); a stable stand-in where none is configured."""
        pid = self.project_id(project)
        return self.numbers.get(pid) or str(100000000000 + zlib.crc32(pid.encode()) % 10**11)

    def known(self, id_or_number: str) -> bool:
        return self.project_id(id_or_number) in self.projects

    def parent(self, resource: str) -> str | None:
        if resource == TOP:
            return None
        if resource in self.parents:
            return self.parents[resource]
        kind, _, ident = resource.partition(":")
        if kind in ("project", "folder", "organization"):
            return TOP
        if kind == "serviceAccount":      # NAME@PROJECT.iam.gserviceaccount.com lives in PROJECT
            m = re.fullmatch(r"[^@]+@([a-z][a-z0-9-]+)\.iam\.gserviceaccount\.com", ident)
            if m:
                return f"project:{m.group(1)}"
        return f"project:{self.default_project}"

    def ancestors(self, resource: str) -> list[str]:
        """The resource, then every node above it, up to TOP."""
        chain, node = [], resource
        while node is not None and node not in chain:
            chain.append(node)
            node = self.parent(node)
        return chain

    def project_of(self, resource: str) -> str:
        return next((n.split(":", 1)[1] for n in self.ancestors(resource) if n.startswith("project:")),
                    self.default_project)

    # roles and bindings --------------------------------------------------------------------------------------------
    def permissions(self, role: str) -> frozenset[str]:
        return R.PREDEFINED.get(role) or self.custom_roles.get(role) or frozenset()

    def allows(self, member: str | None, permission: str, resource: str) -> bool:
        nodes = set(self.ancestors(resource))
        for m, role, res in list(self.grants.triples):
            if res not in nodes or permission not in self.permissions(role):
                continue
            if m == member or m == PUBLIC or (m == AUTHENTICATED and member):
                return True
        return False

    def members_with(self, permission: str, resource: str) -> set[str]:
        nodes = set(self.ancestors(resource))
        return {m for m, role, res in list(self.grants.triples)
                if res in nodes and permission in self.permissions(role)}

    # from the plan -------------------------------------------------------------------------------------------------
    def load_plan(self, plan) -> None:
        """The stacks' hierarchy and IAM, read from the synthesized plan: projects (and their folder or
        organization), where each secret, bucket and service account lives, custom roles, and the bindings at every
        level (organization, folder, project, secret, service account, bucket, Pub/Sub topic)."""
        for r in plan.of_type("google_project"):
            v = plan.resolved(r)
            parent = f"folder:{str(v['folder_id']).removeprefix('folders/')}" if v.get("folder_id") else \
                f"organization:{str(v['org_id']).removeprefix('organizations/')}" if v.get("org_id") else ""
            self.add_project(v["project_id"], str(v.get("number") or ""), parent)
        for r in plan.of_type("google_folder"):
            v = plan.resolved(r)
            name = str(v.get("folder_id") or v.get("name") or r.name).removeprefix("folders/")
            parent = str(v.get("parent") or "")
            if parent:
                kind, _, ident = parent.partition("s/")
                self.parents[f"folder:{name}"] = f"{kind}:{ident}"
        for r in plan.of_type("google_secret_manager_secret"):
            v = plan.resolved(r)
            self.place(f"secret:{v['secret_id']}", v.get("project"))
        for r in plan.of_type("google_storage_bucket"):
            v = plan.resolved(r)
            self.place(f"bucket:{v['name']}", v.get("project"))
        for r in plan.of_type("google_pubsub_topic"):        # the rotation topics: their IAM is reported too
            v = plan.resolved(r)
            self.place(f"pubsub_topic:{v['name']}", v.get("project"))
        for r in plan.of_type("google_service_account"):
            v = plan.resolved(r)
            project = v.get("project") or self.default_project
            self.place(f"serviceAccount:{v['account_id']}@{project}.iam.gserviceaccount.com", project)
        for r in plan.of_type("google_project_iam_custom_role"):
            v = plan.resolved(r)
            self.custom_roles[f"projects/{v.get('project') or self.default_project}/roles/{v['role_id']}"] = \
                frozenset(v.get("permissions") or [])
        for r in plan.of_type("google_organization_iam_custom_role"):
            v = plan.resolved(r)
            self.custom_roles[f"organizations/{v['org_id']}/roles/{v['role_id']}"] = \
                frozenset(v.get("permissions") or [])
        targets = {
            "google_secret_manager_secret_iam": lambda v: f"secret:{str(v['secret_id']).rsplit('/', 1)[-1]}",
            "google_service_account_iam": lambda v: f"serviceAccount:{str(v['service_account_id']).rsplit('/', 1)[-1]}",
            "google_project_iam": lambda v: f"project:{self.project_id(v.get('project') or self.default_project)}",
            "google_storage_bucket_iam": lambda v: f"bucket:{str(v['bucket']).removeprefix('b/')}",
            "google_folder_iam": lambda v: f"folder:{str(v['folder']).removeprefix('folders/')}",
            "google_organization_iam": lambda v: f"organization:{v['org_id']}",
            "google_pubsub_topic_iam": lambda v: f"pubsub_topic:{str(v['topic']).rsplit('/', 1)[-1]}",
        }
        for prefix, target in targets.items():
            for r in plan.of_type(f"{prefix}_member", f"{prefix}_binding"):
                v = plan.resolved(r)
                for member in v.get("members") or [v.get("member")]:
                    self.grants.add(member, v["role"], target(v))

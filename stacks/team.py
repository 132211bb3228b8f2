"""One team's own resources: its token secrets, its three identities, its buckets and the grants between them.

An environment without teams has one implicit team whose resources sit at the stack's root, in the environment's
project (their names and addresses are the environment's, as before teams existed). With `[teams.NAME]`, each team
gets these under a `team-NAME` scope, named `<prefix>-NAME-...`, in the team's own project (`project_id` of its
table): Vertex AI, Logging and Cloud Storage roles are granted on that project only, so Google's IAM, not a label
or a name, keeps one team's jobs, logs and objects from another's. The network, the proxy, the CA, the logs bucket
and the perimeter stay the environment's (the Shared VPC host). Nothing here grants one team anything on another
team's resources.
"""
from __future__ import annotations

from constructs import Construct

from stacks.config import Settings, Team
from stacks.identity import Identity
from stacks.naming import Names
from stacks.project import Project
from stacks.secret import TokenSecret
from stacks.storage import Bucket

STAGING_EXPIRY_DAYS = 14


class TeamResources:
    def __init__(self, scope: Construct, *, settings: Settings, names: Names, project: Project,
                 labels: dict[str, str], logs: Bucket, bucket_deps, team: Team | None,
                 shared_kms_grants: "TeamResources | None" = None) -> None:
        s = settings
        who = f" (team {team.name})" if team else ""
        self.team = team
        self.names = names
        self.project = project
        self.project_id = project.project_id
        pid = project.project_id
        self.trainer = Identity(scope, "trainer", project_id=pid, account_id=names.trainer_account_id,
                                display_name=f"hfgate trainer{who}",
                                description="Runs Vertex AI training jobs; reads the Hugging Face token")
        self.submitter = Identity(scope, "submitter", project_id=pid,
                                  account_id=names.submitter_account_id, display_name=f"hfgate submitter{who}",
                                  description="Checks the token and submits training jobs as the trainer")
        # What the read and the write token's secrets share: where they live, their replicas, keys and rotation.
        secret = dict(project=project, replicas=s.replicas, rotation_days=s.token_rotation_days, labels=labels,
                      kms_key=s.kms_key, replica_keys=s.replica_keys)
        self.token = TokenSecret(scope, "hf-token", secret_id=names.secret_id, rotation_topic=names.rotation_topic,
                                 write_only_version=s.token_write_only, **secret,
                                 grants_from=shared_kms_grants.token if shared_kms_grants else None)
        self.token.grant_read(self.trainer)    # the job's bootstrap reads the pinned version
        self.token.grant_read(self.submitter)  # preflight reads it at submit time

        # Publishing (`hfgate publish`) uses a write token of its own, read by one account that can do nothing
        # else; whoever publishes impersonates it. Not the submitter itself: CI that trains (and can act as the
        # trainer, whose code is whatever the job runs) would then hold a token that writes to the organization.
        self.publisher = Identity(scope, "publisher", project_id=pid,
                                  account_id=names.publisher_account_id, display_name=f"hfgate publisher{who}",
                                  description="Reads the Hugging Face write token; impersonated by hfgate publish")
        self.write_token = TokenSecret(scope, "hf-write-token", secret_id=names.write_secret_id,
                                       rotation_topic=names.write_rotation_topic, **secret,
                                       purpose="hugging-face-write-token",
                                       set_with="hfgate token set --kind write --env ...",
                                       grants_from=(shared_kms_grants.token if shared_kms_grants else self.token))
        self.write_token.grant_read(self.publisher)
        self.publishers = team.publishers if team else s.publishers
        for member in self.publishers:
            self.publisher.grant_impersonate(self.submitter if member == "submitter" else member)
        # A team's people and CI act as its submitter (impersonation; CI through Workload Identity Federation).
        for member in (team.submitters if team else ()):
            self.submitter.grant_impersonate(member)

        self.staging = Bucket(scope, "staging-bucket", project_id=pid, name=names.staging_bucket,
                              location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=logs,
                              expire_after_days=STAGING_EXPIRY_DAYS, depends_on=bucket_deps)
        self.artifacts = Bucket(scope, "artifacts-bucket", project_id=pid, name=names.artifacts_bucket,
                                location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=logs,
                                soft_delete_days=30, depends_on=bucket_deps)
        # Mirrors are read by jobs and written only by whoever runs `hfgate mirror`: a job (any code in the
        # container) must not be able to change what the next job trains from.
        self.mirror = Bucket(scope, "mirror-bucket", project_id=pid, name=names.mirror_bucket,
                             location=s.region, labels=labels, kms_key=s.kms_key, log_bucket=logs,
                             soft_delete_days=30, depends_on=bucket_deps)
        self.staging.grant_write(self.submitter)
        self.staging.grant_read(self.trainer)
        self.artifacts.grant_write(self.trainer)    # outputs and checkpoints
        self.artifacts.grant_read(self.submitter)   # results, for whoever submitted
        self.mirror.grant_write(self.submitter)     # `hfgate mirror` uploads models and datasets
        self.mirror.grant_read(self.trainer)

        self.trainer.grant_act_as(self.submitter)
        project.grant_role(self.submitter.member, "roles/aiplatform.user", "submit custom jobs",
                           names.submitter_account_id)
        project.grant_role(self.trainer.member, "roles/logging.logWriter", "job logs", names.trainer_account_id)
        # `hfgate logs` reads the jobs' logs as the submitter: logging.logEntries.list, which roles/aiplatform.user
        # does not hold (Logging's access-control page: roles/logging.viewer does); on this project only.
        project.grant_role(self.submitter.member, "roles/logging.viewer", "read job logs",
                           names.submitter_account_id)

    def publisher_members(self) -> list[str]:
        """`publishers` as IAM members (the literal \"submitter\" resolved), for the outputs contract."""
        sub = f"serviceAccount:{self.names.email(self.names.submitter_account_id, self.project_id)}"
        return [sub if m == "submitter" else m for m in self.publishers]

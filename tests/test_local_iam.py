"""The local cloud checks every permission it serves, per project, with one evaluator (localcloud.iam over
review/roles.py's table): two teams in two projects (config/local-teams.toml), one team's principals and jobs trying
the other team's buckets (Cloud Storage's JSON API and the job mounts), jobs (Vertex AI get/list/cancel, network
attachment), logs (Cloud Logging entries:list) and accounts (IAM Credentials). Each attempt is refused as the real
service refuses it, with nothing changed; the same calls within a team still work. And every team-scoped lookup in
jobs/ keeps to what only the team controls: a look-alike job named like a team's run blocks neither its publish nor
its rotation."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from google.api_core import exceptions as gexc

from tests.conftest import ROOT
from tests.test_teams_local import _create, _store_token, _wait


@pytest.fixture(scope="module")
def teams(synth_dir):
    from localcloud import LocalCloud
    from review.plan import synthesized
    with LocalCloud(plan=synthesized(synth_dir, "local-teams"), env="local-teams") as c:
        c.jobs.path_prefix = [str(ROOT / "tests" / "bin")]
        versions = {team: _store_token(c, team, c.hub_tokens["alice-read"]) for team in ("alpha", "beta")}
        yield c, versions


def _sa(cloud, team: str, role: str) -> str:
    return f"serviceAccount:{getattr(cloud.team_outputs[team], f'{role}_email')}"


def _objects(cloud, bucket: str) -> dict[str, bytes]:
    """What the bucket holds, read as the local cloud itself (no IAM): the ground truth."""
    return {b.name: b.download_as_bytes() for b in cloud.gcs.client().list_blobs(bucket)}


def _body(cloud, team: str, versions, code: str, name: str | None = None, bare: bool = False) -> dict:
    """hfgate's request for `team` (its own outputs contract), running `code`. `bare`: no environment and no output
    directory, so the job mounts nothing (a look-alike of an account that may read no team bucket)."""
    from jobs.jobspec import TrainRequest, build_custom_job
    o = cloud.team_outputs[team]
    body = build_custom_job(TrainRequest(model="hfgate-demo/tiny-gated-lm", dataset="hfgate-demo/tiny-chat",
                                         display_name=name or f"{team}-{time.time_ns()}", checkpoint_every=0),
                            o, token_version=versions[team], token_fingerprint="x")
    pool = body["job_spec"]["worker_pool_specs"][0]
    pool["container_spec"].update(command=["python3", "-c", code], args=[])
    if bare:
        pool["container_spec"]["env"] = []
        body["job_spec"].pop("base_output_directory", None)
    return body


def _job(cloud, team: str, versions, code: str, name: str | None = None) -> dict:
    return _create(cloud, _body(cloud, team, versions, code, name), team)


# Cloud Storage through its API -----------------------------------------------------------------------------------
def test_cloud_storage_refuses_another_teams_buckets_with_googles_errors(teams):
    cloud, _ = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    # Within beta: its trainer writes its artifacts, its submitter reads them.
    cloud.gcs.client(as_member=_sa(cloud, "beta", "trainer")).bucket(beta.artifacts_bucket_name) \
        .blob("runs/b1/model/model.safetensors").upload_from_string(b"beta weights")
    got = cloud.gcs.client(as_member=_sa(cloud, "beta", "submitter")).bucket(beta.artifacts_bucket_name) \
        .blob("runs/b1/model/model.safetensors").download_as_bytes()
    assert got == b"beta weights"
    before = {b: _objects(cloud, b) for b in (beta.artifacts_bucket_name, beta.mirror_bucket_name,
                                              beta.staging_bucket_name)}
    for who in ("trainer", "submitter"):
        client = cloud.gcs.client(as_member=_sa(cloud, "alpha", who))
        email = getattr(alpha, f"{who}_email")
        for bucket in before:
            b = client.bucket(bucket)
            attempts = {
                "storage.objects.list": lambda: list(client.list_blobs(bucket)),
                "storage.objects.get": lambda: b.blob("runs/b1/model/model.safetensors").download_as_bytes(),
                "storage.objects.create": lambda: b.blob("runs/b1/model/planted.bin").upload_from_string(b"x"),
                "storage.objects.delete": lambda: b.blob("runs/b1/model/model.safetensors").delete(),
            }
            for permission, attempt in attempts.items():
                with pytest.raises(gexc.Forbidden) as refused:
                    attempt()
                assert f"{email} does not have {permission} access" in str(refused.value), refused.value
        with pytest.raises(gexc.Forbidden, match="storage.buckets.list"):
            list(client.list_buckets(project=beta.project_id))
    assert {b: _objects(cloud, b) for b in before} == before          # nothing changed
    # The answer is Cloud Storage's JSON error, through plain HTTP with the caller's bearer token.
    token = cloud.identities.issue(_sa(cloud, "alpha", "submitter"))
    req = urllib.request.Request(f"{cloud.gcs.url}/storage/v1/b/{beta.artifacts_bucket_name}/o",
                                 headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=30)
    err = json.loads(http.value.read())["error"]
    assert http.value.code == 403 and err["code"] == 403 and err["errors"][0]["reason"] == "forbidden"
    assert "Permission 'storage.objects.list' denied on resource" in err["message"]
    # An unknown token is 401, as Cloud Storage answers invalid credentials.
    req = urllib.request.Request(f"{cloud.gcs.url}/storage/v1/b/{alpha.artifacts_bucket_name}/o",
                                 headers={"Authorization": "Bearer ya29.not-issued"})
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(req, timeout=30)
    assert http.value.code == 401
    # Within alpha, what its roles hold and no more: the trainer reads the mirror but may not write it.
    trainer = cloud.gcs.client(as_member=_sa(cloud, "alpha", "trainer"))
    trainer.bucket(alpha.artifacts_bucket_name).blob("runs/a1/model/x.bin").upload_from_string(b"alpha")
    assert [b.name for b in trainer.list_blobs(alpha.mirror_bucket_name)] == \
        [b.name for b in cloud.gcs.client().list_blobs(alpha.mirror_bucket_name)]
    with pytest.raises(gexc.Forbidden, match="storage.objects.create"):
        trainer.bucket(alpha.mirror_bucket_name).blob("models/planted").upload_from_string(b"x")
    submitter = cloud.gcs.client(as_member=_sa(cloud, "alpha", "submitter"))
    assert submitter.bucket(alpha.artifacts_bucket_name).blob("runs/a1/model/x.bin").download_as_bytes() == b"alpha"


# the job mounts --------------------------------------------------------------------------------------------------
def test_each_job_mounts_its_own_folder_with_its_accounts_rights(teams):
    """A beta job writes a checkpoint. An alpha job reaches for beta's bucket by a path its spec does not name (so
    nothing is mounted for it): it finds nothing of beta's, and what it writes there is refused as alpha's trainer
    (the job fails, beta's bucket unchanged). Beta's next job sees its checkpoint and nothing planted."""
    cloud, versions = teams
    beta = cloud.team_outputs["beta"].artifacts_bucket_name
    run = f"runs/victim-{time.time_ns()}/model/checkpoint-9"
    write = (f"import os; p = '/gcs/{beta}/{run}'; os.makedirs(p, exist_ok=True);"
             " open(p + '/model.safetensors', 'wb').write(b'beta checkpoint')")
    first = _job(cloud, "beta", versions, write)
    assert _wait(cloud, first["job"]).state.name == "JOB_STATE_SUCCEEDED"
    assert _objects(cloud, beta)[f"{run}/model.safetensors"] == b"beta checkpoint"
    before = _objects(cloud, beta)
    split = beta[:10] + "' + '" + beta[10:]           # the bucket's name, not written whole in the spec
    plant = (f"import os; p = '/gcs/' + '{split}' + '/{run}';"
             " print('seen:', sorted(os.listdir(p)) if os.path.isdir(p) else 'nothing');"
             " os.makedirs(p, exist_ok=True); open(p + '/planted.py', 'w').write('print(1)')")
    alpha_job = _job(cloud, "alpha", versions, plant)
    job = _wait(cloud, alpha_job["job"])
    alpha_id = alpha_job["job"].rsplit("/", 1)[-1]
    lines = [line for _, line in cloud.jobs.logs[alpha_id]]
    assert "seen: nothing" in lines, lines
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 7, job.error     # PERMISSION_DENIED
    assert cloud.team_outputs["alpha"].trainer_email in job.error.message and beta in job.error.message
    assert _objects(cloud, beta) == before
    assert cloud.jobs.mount(alpha_id) != cloud.jobs.mount(first["job"].rsplit("/", 1)[-1])
    read = f"import os; print('beta sees:', sorted(os.listdir('/gcs/{beta}/{run}')))"
    second = _job(cloud, "beta", versions, read)
    assert _wait(cloud, second["job"]).state.name == "JOB_STATE_SUCCEEDED"
    assert "beta sees: ['model.safetensors']" in [line for _, line in cloud.jobs.logs[second["job"].rsplit("/", 1)[-1]]]


# Vertex AI -------------------------------------------------------------------------------------------------------
def test_vertex_ai_checks_every_call_on_the_jobs_project(teams):
    cloud, versions = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    created = _job(cloud, "beta", versions, "import time; time.sleep(120)")
    name = created["job"]
    from jobs import endpoints
    with cloud.environ(as_member=_sa(cloud, "alpha", "submitter"), team="alpha"):
        client = endpoints.vertex(alpha.region)
        for call, permission in ((lambda: client.get_custom_job(name=name), "aiplatform.customJobs.get"),
                                 (lambda: client.cancel_custom_job(name=name), "aiplatform.customJobs.cancel"),
                                 (lambda: list(client.list_custom_jobs(
                                     parent=f"projects/{beta.project_id}/locations/{beta.region}")),
                                  "aiplatform.customJobs.list")):
            with pytest.raises(gexc.PermissionDenied, match=permission):
                call()
        mine = [j.name for j in client.list_custom_jobs(parent=f"projects/{alpha.project_id}/locations/"
                                                              f"{alpha.region}")]
        assert name not in mine
        # The same name under alpha's own project does not exist there.
        with pytest.raises(gexc.NotFound):
            client.get_custom_job(name=f"projects/{alpha.project_number}/locations/{alpha.region}/customJobs/"
                                        f"{name.rsplit('/', 1)[-1]}")
    job_id = name.rsplit("/", 1)[-1]
    assert cloud.jobs.jobs[job_id].state.name in ("JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    # The CLI says so too: alpha's status, logs and cancel of beta's job are refused and change nothing.
    from tests.test_teams_local import _cli
    for args in (("status", job_id), ("logs", job_id), ("cancel", job_id)):
        proc = _cli(cloud, *args, as_member=_sa(cloud, "alpha", "submitter"), team="alpha")
        assert proc.returncode != 0 and ("denied" in proc.stderr.lower() or "no job" in proc.stderr), proc.stderr
    assert cloud.jobs.jobs[job_id].state.name != "JOB_STATE_CANCELLING"
    # Within beta: get, list and cancel work.
    with cloud.environ(as_member=_sa(cloud, "beta", "submitter"), team="beta"):
        client = endpoints.vertex(beta.region)
        assert client.get_custom_job(name=name).name == name
        assert name in [j.name for j in client.list_custom_jobs(parent=f"projects/{beta.project_id}/locations/"
                                                                        f"{beta.region}")]
        client.cancel_custom_job(name=name)
    assert _wait(cloud, name).state.name == "JOB_STATE_CANCELLED"


def test_a_job_may_use_only_a_network_attachment_of_its_own_project(teams):
    """The local cloud's rule, stricter than Google documents: vpc-psc-i-setup lets a job pass "the full network
    attachment path" of another project and no page says what Vertex AI then checks (README, "A team is a project").
    Here alpha naming beta's attachment (and with it beta's source range at the proxy) is refused, nothing is
    created; alpha's own is accepted. Creating in beta's project is refused outright."""
    cloud, versions = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    attachment = "projects/{}/regions/{}/networkAttachments/{}-vertex-psci"
    theirs = _body(cloud, "alpha", versions, "pass")
    theirs["job_spec"]["psc_interface_config"] = {"network_attachment": attachment.format(
        beta.project_id, beta.region, "hfg-lt-beta")}
    before = len(cloud.jobs.jobs)
    out = _create(cloud, theirs, "alpha")
    assert out.get("error") == "InvalidArgument" and "network attachment" in out["message"], out
    assert beta.project_id in out["message"] and len(cloud.jobs.jobs) == before
    ours = _body(cloud, "alpha", versions, "pass")
    ours["job_spec"]["psc_interface_config"] = {"network_attachment": attachment.format(
        alpha.project_id, alpha.region, "hfg-lt-alpha")}
    out = _create(cloud, ours, "alpha")
    assert "job" in out, out
    assert _wait(cloud, out["job"]).state.name == "JOB_STATE_SUCCEEDED"
    # alpha's submitter creating in beta's project: no aiplatform.customJobs.create there.
    from tests.test_teams_local import CREATE, _run
    body = _body(cloud, "alpha", versions, "pass")
    proc = _run(cloud, CREATE, f"projects/{beta.project_id}/locations/{beta.region}", beta.region,
                as_member=_sa(cloud, "alpha", "submitter"), team="alpha", stdin=json.dumps(body))
    refused = json.loads(proc.stdout.strip().splitlines()[-1])
    assert refused.get("error") == "PermissionDenied" and "aiplatform.customJobs.create" in refused["message"]


# Cloud Logging and IAM Credentials ----------------------------------------------------------------------------------
def _post(url: str, member: str | None, cloud, body: dict) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if member:
        headers["Authorization"] = f"Bearer {cloud.identities.issue(member)}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    import ssl
    ctx = ssl.create_default_context(cafile=str(cloud.tls.trust_file))
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_logging_reads_are_checked_on_the_project_read(teams):
    cloud, versions = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    out = _job(cloud, "beta", versions, "print('beta secret line')")
    assert _wait(cloud, out["job"]).state.name == "JOB_STATE_SUCCEEDED"
    job_id = out["job"].rsplit("/", 1)[-1]
    flt = f'resource.type="ml_job" AND resource.labels.job_id="{job_id}"'
    url = f"{cloud.rest.url}/v2/entries:list"
    status, body = _post(url, _sa(cloud, "alpha", "submitter"), cloud,
                         {"resourceNames": [f"projects/{beta.project_id}"], "filter": flt})
    assert status == 403 and "logging.logEntries.list" in body["error"]["message"], body
    status, body = _post(url, _sa(cloud, "alpha", "submitter"), cloud,
                         {"resourceNames": [f"projects/{alpha.project_id}"], "filter": flt})
    assert status == 200 and not body.get("entries"), body           # beta's job logs in beta's project
    status, body = _post(url, _sa(cloud, "beta", "submitter"), cloud,
                         {"resourceNames": [f"projects/{beta.project_id}"], "filter": flt})
    assert status == 200 and any("beta secret line" in e["textPayload"] for e in body["entries"]), body


def test_iam_credentials_mints_only_for_accounts_the_caller_may_impersonate(teams):
    cloud, _ = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    url = cloud.rest.url + "/v1/projects/-/serviceAccounts/{}:generateAccessToken"
    body = {"scope": ["https://www.googleapis.com/auth/cloud-platform"]}
    minted = len(cloud.impersonations)
    for caller, target in (("user:ana@example.com", beta.submitter_email),
                           (_sa(cloud, "alpha", "submitter"), beta.publisher_email),
                           ("user:ben@example.com", alpha.submitter_email)):
        status, answer = _post(url.format(target), caller, cloud, body)
        assert status == 403 and "iam.serviceAccounts.getAccessToken" in answer["error"]["message"], answer
    assert len(cloud.impersonations) == minted
    for caller, target in (("user:ana@example.com", alpha.submitter_email),
                           (_sa(cloud, "alpha", "submitter"), alpha.publisher_email)):
        status, answer = _post(url.format(target), caller, cloud, body)
        assert status == 200 and cloud.identities.member_for(f"Bearer {answer['accessToken']}") == \
            f"serviceAccount:{target}"


# team-scoped lookups in jobs/ ----------------------------------------------------------------------------------------
def test_a_look_alike_job_blocks_neither_publish_nor_rotation(teams):
    """Someone else who may create jobs in alpha's project (here an account granted aiplatform.user there, acting as
    itself) starts a job named like alpha's run, with hfgate's labels and alpha's token version. publish's run lookup,
    rotation's running jobs and status see alpha's own jobs only (its project, its trainer)."""
    cloud, versions = teams
    alpha = cloud.team_outputs["alpha"]
    run = f"alpha-run-{time.time_ns()}"
    mine = _job(cloud, "alpha", versions, "import time; time.sleep(120)", name=run)
    intruder = "serviceAccount:intruder@hfgate-local.iam.gserviceaccount.com"
    extra = {(intruder, "roles/aiplatform.user", f"project:{alpha.project_id}"),
             (intruder, "roles/iam.serviceAccountUser", intruder)}
    cloud.grants.triples |= extra
    try:
        look_alike = _body(cloud, "alpha", versions, "import time; time.sleep(120)", name=run, bare=True)
        look_alike["job_spec"]["service_account"] = intruder.split(":", 1)[1]
        from tests.test_teams_local import CREATE, _run
        proc = _run(cloud, CREATE, f"projects/{alpha.project_id}/locations/{alpha.region}", alpha.region,
                    as_member=intruder, team="alpha", stdin=json.dumps(look_alike))
        other = json.loads(proc.stdout.strip().splitlines()[-1])
        assert "job" in other, other
        from jobs.lifecycle import running_jobs_by_version
        from jobs.publish import find_job
        with cloud.environ(as_member=_sa(cloud, "alpha", "submitter"), team="alpha"):
            found = find_job(alpha, run)
            busy = running_jobs_by_version(alpha)
        assert found.name == mine["job"] and found.name != other["job"]
        listed = [name for names in busy.values() for name in names]
        assert mine["job"] in listed and other["job"] not in listed
    finally:
        cloud.grants.triples -= extra
        for name in (mine.get("job"), locals().get("other", {}).get("job")):
            if name and cloud.jobs.jobs[name.rsplit("/", 1)[-1]].state.name not in (
                    "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                cloud.jobs.cancel(cloud.admin, name)


def test_the_evaluator_follows_the_hierarchy_and_judges_roles_by_permission():
    """One evaluator for every service: a grant holds on its resource and everything below it (organization ->
    folder -> project -> bucket/secret/account), a role grants the permissions review/roles.py lists for it and no
    other, and a role the table does not know grants nothing."""
    from localcloud.iam import Iam
    from localcloud.state import Grants
    iam = Iam(Grants(), "host")
    iam.add_project("team-a", "11", parent="folder:ml")
    iam.add_project("team-b", "12")
    iam.parents["folder:ml"] = "organization:acme"
    iam.place("bucket:a-artifacts", "team-a")
    iam.place("bucket:b-artifacts", "12")                       # by number
    iam.grants.add("user:reader@acme.example", "roles/storage.objectViewer", "folder:ml")
    iam.grants.add("user:ops@acme.example", "roles/logging.viewer", "organization:acme")
    iam.grants.add("user:x@acme.example", "roles/storage.objectViewer", "bucket:a-artifacts")
    iam.grants.add("user:x@acme.example", "roles/made.up", "project:team-b")
    assert iam.ancestors("bucket:a-artifacts") == ["bucket:a-artifacts", "project:team-a", "folder:ml",
                                                   "organization:acme", "*"]
    assert iam.allows("user:reader@acme.example", "storage.objects.get", "bucket:a-artifacts")
    assert not iam.allows("user:reader@acme.example", "storage.objects.get", "bucket:b-artifacts")
    assert not iam.allows("user:reader@acme.example", "storage.objects.create", "bucket:a-artifacts")
    assert iam.allows("user:ops@acme.example", "logging.logEntries.list", "project:team-a")
    assert not iam.allows("user:ops@acme.example", "logging.logEntries.list", "project:team-b")
    assert iam.allows("user:x@acme.example", "storage.objects.list", "bucket:a-artifacts")
    assert not iam.allows("user:x@acme.example", "storage.objects.list", "bucket:b-artifacts")
    assert not any(iam.allows("user:x@acme.example", p, "project:team-b")
                   for p in ("aiplatform.customJobs.list", "storage.objects.get", "logging.logEntries.list"))
    assert iam.project_of("bucket:b-artifacts") == "team-b" and iam.number("team-b") == "12"
    assert iam.project_of("serviceAccount:t@team-a.iam.gserviceaccount.com") == "team-a"


def test_a_teams_log_reads_use_its_own_projects_quota(teams):
    """Cloud Logging's read quota is the consumer project's: alpha using up its own leaves beta's reads alone."""
    cloud, _ = teams
    alpha, beta = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    url = f"{cloud.rest.url}/v2/entries:list"
    with cloud.logging_lock:
        cloud.logging_reads_of.setdefault(alpha.project_id, []).extend(
            [time.time() + 5] * cloud.logging_read_quota_per_min)
    try:
        status, body = _post(url, _sa(cloud, "alpha", "submitter"), cloud,
                             {"resourceNames": [f"projects/{alpha.project_id}"], "filter": 'resource.type="ml_job"'})
        assert status == 429 and f"project_number:{alpha.project_number}" in body["error"]["message"], body
        status, body = _post(url, _sa(cloud, "beta", "submitter"), cloud,
                             {"resourceNames": [f"projects/{beta.project_id}"], "filter": 'resource.type="ml_job"'})
        assert status == 200, body
    finally:
        with cloud.logging_lock:
            cloud.logging_reads_of[alpha.project_id].clear()


def test_a_resumable_session_id_authorizes_only_its_own_upload(teams):
    """Outside review: the front let any request carrying the `upload_id` of a session it had opened through
    unchecked. Alpha's trainer opens a session in its own bucket, then names that id on reads, deletes and uploads
    in beta's bucket: each is refused (403) with beta's objects unchanged. The session's Location points back at
    the authorizing front (not the IAM-free hop behind it), and alpha's own upload completes through it."""
    cloud, _ = teams
    alpha, beta = cloud.team_outputs["alpha"].artifacts_bucket_name, cloud.team_outputs["beta"].artifacts_bucket_name
    cloud.gcs.client().bucket(beta).blob("runs/s1/model/weights.bin").upload_from_string(b"beta only")
    before = _objects(cloud, beta)
    auth = {"Authorization": f"Bearer {cloud.identities.issue(_sa(cloud, 'alpha', 'trainer'))}"}

    def call(method: str, path: str, data: bytes | None = None, **headers) -> tuple[int, bytes, str]:
        req = urllib.request.Request(cloud.gcs.url + path, data=data, method=method, headers={**auth, **headers})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers.get("Location", "")
        except urllib.error.HTTPError as err:
            return err.code, err.read(), ""

    status, _, location = call("POST", f"/upload/storage/v1/b/{alpha}/o?uploadType=resumable&name=own.bin", b"{}",
                               **{"Content-Type": "application/json"})
    assert status == 200 and location.startswith(cloud.gcs.url + "/upload/storage/v1/b/"), location
    upload_id = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["upload_id"][0]
    sid = f"upload_id={upload_id}"
    for method, path, data in (
            ("GET", f"/storage/v1/b/{beta}/o/runs%2Fs1%2Fmodel%2Fweights.bin?alt=media&{sid}", None),
            ("GET", f"/download/storage/v1/b/{beta}/o/runs%2Fs1%2Fmodel%2Fweights.bin?alt=media&{sid}", None),
            ("GET", f"/storage/v1/b/{beta}/o?{sid}", None),
            ("DELETE", f"/storage/v1/b/{beta}/o/runs%2Fs1%2Fmodel%2Fweights.bin?{sid}", None),
            ("POST", f"/upload/storage/v1/b/{beta}/o?uploadType=media&name=planted.bin&{sid}", b"x"),
            ("PUT", f"/upload/storage/v1/b/{beta}/o?uploadType=resumable&{sid}", b"x")):
        status, body, _ = call(method, path, data)
        assert status in (403, 404) and b"beta only" not in body, (method, path, status, body)
    assert _objects(cloud, beta) == before
    # the session itself still completes, through the front
    status, _, _ = call("PUT", urllib.parse.urlsplit(location).path + "?" + urllib.parse.urlsplit(location).query,
                        b"alpha bytes", **{"Content-Range": "bytes 0-10/11"})
    assert status in (200, 201), status
    assert _objects(cloud, alpha)["own.bin"] == b"alpha bytes"


def test_listing_another_projects_secrets_is_refused_not_answered_empty(teams):
    """Outside review: ListSecrets answered any caller (anonymous, a principal of no team, alpha's members) on
    beta's project, by id or number, with a success (an empty list); Google checks secretmanager.secrets.list on the
    parent project (REST reference, projects.secrets.list) and refuses. The admin (a grant above the projects) lists
    every beta secret, by id and by number."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.secretmanager_v1 import types as sm

    from jobs import endpoints
    cloud, _ = teams
    beta = cloud.team_outputs["beta"]
    for member in (_sa(cloud, "alpha", "submitter"), _sa(cloud, "beta", "trainer"), "user:ana@example.com",
                   "user:nobody@example.com", None):
        with cloud.environ(as_member=member or cloud.admin):
            client = endpoints.secret_manager(creds=None if member else AnonymousCredentials())
            try:
                for parent in (f"projects/{beta.project_id}", f"projects/{beta.project_number}"):
                    with pytest.raises(gexc.PermissionDenied if member else gexc.Unauthenticated) as refused:
                        list(client.list_secrets(request=sm.ListSecretsRequest(parent=parent)))
                    if member:
                        assert "secretmanager.secrets.list" in str(refused.value), refused.value
            finally:
                client.transport.close()
    with cloud.environ(as_member=cloud.admin):
        client = endpoints.secret_manager()
        try:
            for parent in (f"projects/{beta.project_id}", f"projects/{beta.project_number}"):
                names = {s.name.rsplit("/", 1)[-1] for s in client.list_secrets(parent=parent)}
                assert beta.token_secret.rsplit("/", 1)[-1] in names, names
                assert beta.write_token_secret.rsplit("/", 1)[-1] in names, names
        finally:
            client.transport.close()


def test_an_expired_forged_or_absent_token_is_refused_everywhere(teams):
    """Outside review: a token the local cloud issued never expired (Google's access tokens live an hour at most;
    generateAccessToken's `lifetime`, REST reference). A token minted for 2 s works within its team, then every
    service refuses it as unknown credentials; a forged token and no token are refused the same way."""
    cloud, _ = teams
    alpha = cloud.team_outputs["alpha"]
    minted = cloud.rest.url + f"/v1/projects/-/serviceAccounts/{alpha.submitter_email}:generateAccessToken"
    status, answer = _post(minted, "user:ana@example.com", cloud,
                           {"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "2s"})
    assert status == 200, answer
    status, refused = _post(minted, "user:ana@example.com", cloud,
                            {"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "7200s"})
    assert status == 400 and refused["error"]["status"] == "INVALID_ARGUMENT", refused
    token = answer["accessToken"]
    import ssl
    ctx = ssl.create_default_context(cafile=str(cloud.tls.trust_file))

    def calls(bearer: str | None) -> list[int]:
        auth = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        reqs = [(urllib.request.Request(f"{cloud.gcs.url}/storage/v1/b/{alpha.artifacts_bucket_name}/o",
                                        headers=auth), None),
                (urllib.request.Request(f"{cloud.rest.url}/v2/entries:list", method="POST",
                                        data=json.dumps({"resourceNames": [f"projects/{alpha.project_id}"],
                                                         "filter": 'resource.type="ml_job"'}).encode(),
                                        headers={**auth, "Content-Type": "application/json"}), ctx),
                (urllib.request.Request(f"{cloud.rest.url}/v1/{alpha.token_secret}/versions/latest:access",
                                        headers=auth), ctx)]
        codes = []
        for req, context in reqs:
            try:
                with urllib.request.urlopen(req, timeout=30, context=context) as resp:
                    codes.append(resp.status)
            except urllib.error.HTTPError as err:
                codes.append(err.code)
        return codes

    live = calls(token)
    assert live[:2] == [200, 200], live          # the submitter lists its artifacts and reads its project's logs
    time.sleep(2.5)
    assert calls(token) == [401, 401, 401]
    assert calls("ya29.local-forged") == [401, 401, 401]
    assert calls(None)[1:] == [401, 401]         # Cloud Storage without a token: anonymous (401 where not public)
    assert calls(None)[0] == 401


def test_an_upload_cannot_name_another_teams_bucket_in_its_metadata(teams):
    """Outside review: a resumable upload started at alpha's bucket path with `"bucket": beta` in its metadata opened a
    session on beta's bucket (the emulator follows the metadata), checked only on alpha's. It now needs
    storage.objects.create on the bucket the metadata names too: refused, no session, nothing written to beta; the
    same upload naming alpha's own bucket still works."""
    cloud, _ = teams
    alpha, beta = cloud.team_outputs["alpha"].artifacts_bucket_name, cloud.team_outputs["beta"].artifacts_bucket_name
    before = _objects(cloud, beta)
    auth = {"Authorization": f"Bearer {cloud.identities.issue(_sa(cloud, 'alpha', 'trainer'))}"}
    boundary = "b0undary"
    for upload, body, ctype in (
            ("resumable", json.dumps({"name": "planted.bin", "bucket": beta}).encode(), "application/json"),
            ("multipart", (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n"
                           + json.dumps({"name": "planted.bin", "bucket": beta})
                           + f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nplanted\r\n--{boundary}--").encode(),
             f"multipart/related; boundary={boundary}")):
        req = urllib.request.Request(f"{cloud.gcs.url}/upload/storage/v1/b/{alpha}/o?uploadType={upload}", data=body,
                                     method="POST", headers={**auth, "Content-Type": ctype})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 403 and b"storage.objects.create" in refused.value.read(), upload
    assert _objects(cloud, beta) == before
    req = urllib.request.Request(f"{cloud.gcs.url}/upload/storage/v1/b/{alpha}/o?uploadType=resumable",
                                 data=json.dumps({"name": "own-meta.bin", "bucket": alpha}).encode(), method="POST",
                                 headers={**auth, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        location = resp.headers["Location"]
    req = urllib.request.Request(location, data=b"alpha", method="PUT", headers={"Content-Range": "bytes 0-4/5"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status in (200, 201)
    assert _objects(cloud, alpha)["own-meta.bin"] == b"alpha"


def test_a_job_takes_tokens_only_from_its_own_metadata_server(teams):
    """Outside review: every identity's metadata server listens on loopback, and an alpha job that connected to
    another one (beta's submitter's) got that account's token. A job's process now gets tokens only from a metadata
    server of the account its job runs as (403 otherwise, nothing issued); its own still answers, and a caller that is
    no job (the user's shell) is unaffected."""
    cloud, versions = teams
    theirs = cloud.metadata_for(_sa(cloud, "beta", "submitter")).hostport
    path = "/computeMetadata/v1/instance/service-accounts/default/token"
    code = ("import json, os, urllib.request as u\n"
            "def token(hostport):\n"
            "    try:\n"
            f"        return json.loads(u.urlopen(u.Request('http://' + hostport + '{path}',"
            " headers={'Metadata-Flavor': 'Google'}), timeout=30).read())['access_token'][:5]\n"
            "    except Exception as e:\n"
            "        return 'refused ' + str(getattr(e, 'code', e))\n"
            f"print('theirs:', token('{theirs}'))\n"
            "print('own:', token(os.environ['GCE_METADATA_HOST']))\n")
    out = _job(cloud, "alpha", versions, code)
    assert _wait(cloud, out["job"]).state.name == "JOB_STATE_SUCCEEDED"
    lines = [line for _, line in cloud.jobs.logs[out["job"].rsplit("/", 1)[-1]]]
    assert "theirs: refused 403" in lines and "own: ya29." in lines, lines
    req = urllib.request.Request(f"http://{theirs}{path}", headers={"Metadata-Flavor": "Google"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["access_token"].startswith("ya29.")

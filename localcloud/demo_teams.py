"""`make demo-teams`: two teams on one platform, offline, through the real protocols.

1. the local cloud of config/local-teams.toml (teams alpha and beta, each in its own project: a contract each, their
   own token secrets, identities, buckets and jobs; the local cloud checks Google's IAM per project);
2. the platform admin stores each team's token (`hfgate token set --team ...`); alpha's submitter checks its own;
3. alpha's submitter, with beta's contract, is refused beta's token (Secret Manager: permission denied, exit 4);
4. a job of alpha's that tries to plant a checkpoint in a beta run is refused (Cloud Storage: alpha's trainer may not
   even list beta's artifacts bucket); beta's bucket is unchanged; alpha's submitter is refused beta's objects
   through Cloud Storage's API, and beta's jobs and logs (Vertex AI, Cloud Logging: permission denied on beta's
   project);
5. the review of config/dev.toml (two teams behind one proxy): the isolation matrix, and each team's allowlist
   replayed from its own source range, the other team's repositories denied.
Exit 0 when every refusal happened and the review passes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    from localcloud.cloud import LocalCloud, ensure_plan
    t0 = time.time()

    def say(text: str = "") -> None:
        print(text, flush=True)

    def step(n: int, title: str) -> None:
        say(f"\n[{time.time() - t0:5.1f}s] {n}/5 {title}")

    def hfgate(cloud, *args, as_member=None, team=None, stdin=None):
        say(f"$ hfgate {' '.join(args)}" + (" < token" if stdin else ""))
        env = {**os.environ, **cloud.env(as_member=as_member, team=team)}
        proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        for line in (proc.stdout + proc.stderr).strip().splitlines():
            say("  " + line)
        say(f"  (exit {proc.returncode})")
        return proc

    ok = []
    step(1, "the local cloud with two teams (config/local-teams.toml)")
    state = Path(tempfile.mkdtemp(prefix="hfgate-demo-teams-"))
    with LocalCloud(state_dir=state, plan=ensure_plan("local-teams"), env="local-teams") as cloud:
        for team, o in cloud.team_outputs.items():
            say(f"  team {team}: project {o.project_id}, token {o.token_secret}, trainer {o.trainer_email},"
                f" artifacts {o.artifacts_bucket}")
        step(2, "each team's token, stored by the platform admin; alpha checks its own")
        for team in ("alpha", "beta"):
            hfgate(cloud, "token", "set", "--team", team, as_member=cloud.admin, team=team,
                   stdin=cloud.hub_tokens["alice-read"])
        alpha = f"serviceAccount:{cloud.team_outputs['alpha'].submitter_email}"
        ok.append(hfgate(cloud, "check", "--team", "alpha", "--model", "hfgate-demo/tiny-gated-lm", as_member=alpha,
                         team="alpha").returncode == 0)
        step(3, "alpha's submitter asks for beta's token")
        ok.append(hfgate(cloud, "check", "--team", "beta", "--model", "hfgate-demo/tiny-open-lm", as_member=alpha,
                         team="beta").returncode == 4)
        step(4, "a job of alpha's tries to plant a checkpoint in a beta run")
        from google.cloud.aiplatform_v1 import types as ai

        from jobs import endpoints
        from jobs.jobspec import TrainRequest, build_custom_job
        beta = cloud.team_outputs["beta"].artifacts_bucket_name
        target = f"/gcs/{beta}/runs/victim/model/checkpoint-9/model.safetensors"
        body = build_custom_job(TrainRequest(model="hfgate-demo/tiny-gated-lm", dataset="hfgate-demo/tiny-chat",
                                             display_name="alpha-plants", checkpoint_every=0),
                                cloud.team_outputs["alpha"], token_version="", token_fingerprint="")
        pool = body["job_spec"]["worker_pool_specs"][0]["container_spec"]
        pool["command"], pool["args"] = ["python3", "-c", f"open({target!r}, 'wb').write(b'planted')"], []
        before = sorted(b.name for b in cloud.gcs.client().list_blobs(beta))
        os.environ.update(cloud.env(as_member=alpha, team="alpha"))
        o = cloud.team_outputs["alpha"]
        job = endpoints.vertex(o.region).create_custom_job(parent=f"projects/{o.project_id}/locations/{o.region}",
                                                           custom_job=ai.CustomJob.from_json(json.dumps(body)))
        job_id = job.name.rsplit("/", 1)[-1]
        while cloud.jobs.jobs[job_id].state.name not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
            time.sleep(0.2)
        final = cloud.jobs.jobs[job_id]
        say(f"  job {job_id} as {o.trainer_email}: {final.state.name.removeprefix('JOB_STATE_')}:"
            f" {final.error.message}")
        unchanged = sorted(b.name for b in cloud.gcs.client().list_blobs(beta)) == before
        say(f"  beta's bucket unchanged: {unchanged}")
        ok.append(final.state.name == "JOB_STATE_FAILED" and unchanged)
        ok.append(_alpha_reaches_for_beta(cloud, alpha, say))
    step(5, "the review of config/dev.toml: isolation matrix and per-team egress replay")
    from review.plan import load
    from review.report import review
    rep = review(load(ensure_plan("dev")))
    iso = rep["isolation"]
    for row in iso["rows"]:
        reach = "; ".join(f"{t}: {', '.join(v)}" for t, v in row["reaches"].items())
        say(f"  {row['principal'].split(':', 1)[1][:48]:<48} ({row['team']} {row['as']}) -> {reach}")
    say(f"  cross-team paths: {len(iso['cross_team'])}")
    for name, team in rep["teams"].items():
        al = team["allowlist"]
        denied = sum(1 for d in al["replay"] if d["note"] == "another team's repository" and d["action"] == "deny")
        say(f"  team {name}: replayed from {al['source_ip']}: {al['summary']}; other teams' repositories denied:"
            f" {denied}")
    ok.append(rep["ok"] and not iso["cross_team"])
    say(f"\n[{time.time() - t0:5.1f}s] demo-teams {'complete' if all(ok) else 'FAILED'}")
    return 0 if all(ok) else 1


def _alpha_reaches_for_beta(cloud, alpha: str, say) -> bool:
    """alpha's submitter, through the official clients, at beta's bucket, jobs and logs: each refused on beta's
    project (localcloud.iam). True when all were."""
    import google.auth.transport.requests
    from google.api_core import exceptions as gexc

    from jobs import endpoints
    o, b = cloud.team_outputs["alpha"], cloud.team_outputs["beta"]
    refused = []

    def attempt(what: str, call) -> None:
        try:
            call()
            say(f"  {what}: allowed")
            refused.append(False)
        except (gexc.Forbidden, gexc.PermissionDenied) as exc:
            say(f"  {what}: refused: {exc.message.split('. ')[0]}")
            refused.append(True)

    with cloud.environ(as_member=alpha, team="alpha"):
        storage = endpoints.storage(o.project_id)
        attempt(f"read gs://{b.artifacts_bucket_name}", lambda: list(storage.list_blobs(b.artifacts_bucket_name)))
        vertex = endpoints.vertex(o.region)
        attempt(f"list jobs in {b.project_id}", lambda: list(vertex.list_custom_jobs(
            parent=f"projects/{b.project_id}/locations/{b.region}")))
        session = google.auth.transport.requests.AuthorizedSession(endpoints.credentials())
        resp = session.post(f"{endpoints.googleapis_rest('logging')}/v2/entries:list",
                            json={"resourceNames": [f"projects/{b.project_id}"], "filter": 'resource.type="ml_job"'},
                            timeout=30)
        say(f"  read logs of {b.project_id}: {resp.status_code} {resp.json()['error']['message']}"
            if resp.status_code != 200 else f"  read logs of {b.project_id}: allowed")
        refused.append(resp.status_code == 403)
    return all(refused)


if __name__ == "__main__":
    sys.exit(main())

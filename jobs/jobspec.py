"""Build the Vertex AI CustomJob: a pure function of its inputs, tested without a network."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from jobs.errors import UsageError
from stacks.contract import Outputs
from stacks.facts import boot_disk_type, machine_problem

# The job's first code travels inside the job spec (`python3 -c`), so no bucket object decides what runs with the
# token: whoever can create objects in a bucket cannot substitute it.
BOOTSTRAP_SOURCE = Path(__file__).with_name("bootstrap.py").read_text()
DISPLAY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# `trl sft` passes --resume_from_checkpoint to the trainer from this release on (1.16 does; 0.13's script calls
# trainer.train() without it): older images save checkpoints but cannot resume from them.
TRL_RESUMES_FROM = (1, 0)

# TRL version in each known training image: trainer arguments must fit the image, not PyPI's latest.
IMAGE_TRL = {
    "us-docker.pkg.dev/deeplearning-platform-release/gcr.io/"
    "huggingface-pytorch-training-cu121.2-3.transformers.4-48.ubuntu2204.py311": (0, 13),
    "localcloud/trl:1.16": (1, 16),
}


class TokenDelivery(str, Enum):
    SECRET_REF = "secret-ref"   # the job carries only the pinned version name; the bootstrap reads it in the job
    ENV = "env"                 # HF_TOKEN in the job spec: readable by anyone with customJobs.get
    MIRROR = "mirror"           # no token in the job at all (weights mirrored into the bucket)


class Scheduling(str, Enum):
    STANDARD = "STANDARD"
    SPOT = "SPOT"
    FLEX_START = "FLEX_START"


@dataclass(frozen=True)
class TrainRequest:
    model: str
    dataset: str
    revision: str = "main"
    machine_type: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None
    replica_count: int = 1
    max_steps: int | None = None
    epochs: float | None = None
    lora: bool = True
    dtype: str | None = None      # default: bfloat16 on GPUs, float32 on CPU-only machines
    timeout_s: int = 24 * 3600
    scheduling: Scheduling = Scheduling.STANDARD
    image: str | None = None
    trl_version: tuple[int, int] | None = None
    extra_args: tuple[str, ...] = ()
    display_name: str | None = None
    token_delivery: TokenDelivery = TokenDelivery.SECRET_REF
    nonce: str = ""             # set to force a new job for an otherwise identical request
    checkpoint_every: int = 500  # steps between checkpoints in the run's folder (0: none); a rerun resumes
    extra_env: dict = field(default_factory=dict)


def label_value(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


# Trainer flags that decide what was checked or where results go: hfgate sets them, `--` may not. argparse also
# takes any unambiguous prefix (`--model_name` is `--model_name_or_path`) and TRL accepts dashes for underscores.
RESERVED_TRAINER_FLAGS = {
    "model_name_or_path": "--model", "model_revision": "--revision", "revision": "--revision",
    "dataset_name": "--dataset", "output_dir": "--display-name", "config": "hfgate options",
    "push_to_hub": "nothing (jobs never upload)", "hub_model_id": "nothing (jobs never upload)",
    "hub_token": "nothing (the job reads the token itself)", "max_steps": "--max-steps",
    "num_train_epochs": "--epochs", "dtype": "--dtype", "torch_dtype": "--dtype", "use_peft": "--no-lora",
}


def reserved_flag_problem(extra_args) -> tuple[str, str] | None:
    for arg in extra_args:
        if not arg.startswith("--") or len(arg) < 3:
            continue
        name = arg[2:].split("=", 1)[0].replace("-", "_")
        for flag, option in RESERVED_TRAINER_FLAGS.items():
            if flag.startswith(name):
                return (f"trainer argument {arg.split('=', 1)[0]!r} would override --{flag}, which hfgate sets from"
                        " what it checked", f"use {option} instead, and drop it after --")
    return None


def trl_args(req: TrainRequest, version: tuple[int, int], output_dir: str, cpu: bool = False) -> list[str]:
    problem = reserved_flag_problem(req.extra_args)
    if problem:
        raise UsageError(*problem)
    args = ["sft", "--model_name_or_path", req.model, "--model_revision", req.revision,
            "--dataset_name", req.dataset, "--output_dir", output_dir, "--report_to", "none",
            "--logging_steps", "1", "--disable_tqdm", "True"]
    if req.checkpoint_every > 0:   # the run's folder in the bucket: a restarted or resubmitted job resumes from it
        args += ["--save_strategy", "steps", "--save_steps", str(req.checkpoint_every), "--save_total_limit", "2"]
    else:
        args += ["--save_strategy", "no"]
    if req.max_steps:
        args += ["--max_steps", str(req.max_steps)]
    if req.epochs:
        args += ["--num_train_epochs", str(req.epochs)]
    # TRL < 0.20 (transformers < 4.56) names the dtype flag torch_dtype; later releases renamed it to dtype.
    args += ["--torch_dtype" if version < (0, 20) else "--dtype", req.dtype or ("float32" if cpu else "bfloat16")]
    if cpu:   # TrainingArguments refuses bf16 (TRL's default) without a GPU unless told to use the CPU
        args += ["--use_cpu", "True", "--bf16", "False"]
    if req.lora:
        args += ["--use_peft", "--lora_r", "16", "--lora_alpha", "32"]
    return args + list(req.extra_args)


def machine_shape(req: TrainRequest, outputs: Outputs) -> tuple[str, str | None, int]:
    """Machine type, accelerator and count: the request's options over the environment's defaults (a bare
    --machine-type brings its own accelerator from the table), validated against the table."""
    machine = req.machine_type or outputs.machine_type
    accel = req.accelerator_type if req.accelerator_type is not None else (outputs.accelerator_type or None)
    count = req.accelerator_count if req.accelerator_count is not None else outputs.accelerator_count
    if req.machine_type and req.accelerator_type is None and req.accelerator_count is None:
        from stacks.facts import MACHINES
        shape = MACHINES.get(machine)
        accel = shape.accelerator_type if shape else None
        count = shape.accelerator_counts[0] if shape and shape.accelerator_counts else 0
    why = machine_problem(machine, accel or None, count or 0)
    if why:
        raise UsageError(f"invalid machine: {why}", "pick a row of the machine table (hfgate machines)")
    return machine, accel or None, count or 0


def request_id(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]


def bootstrap_command() -> list[str]:
    return ["python3", "-c", BOOTSTRAP_SOURCE, "--"]


def build_custom_job(req: TrainRequest, outputs: Outputs, *, token_version: str, token_fingerprint: str,
                     hf_token_value: str | None = None, model_path: str | None = None,
                     dataset_path: str | None = None, mirror_checks: list[dict] | None = None,
                     model_commit: str | None = None) -> dict:
    """The CustomJob as the JSON form of aiplatform_v1.CustomJob. Never contains the token unless
    `token_delivery` is ENV (then `hf_token_value` is required and the caller warns). With MIRROR, `mirror_checks`
    ({dir, manifest_sha256} per mirror folder) are verified by the bootstrap before the trainer starts."""
    machine, accel, count = machine_shape(req, outputs)
    if req.replica_count < 1:
        raise UsageError("--replica-count must be at least 1", "use 1 for one node")
    if req.checkpoint_every < 0:
        raise UsageError("--checkpoint-every must be 0 (no checkpoints) or a number of steps", "e.g. 200")
    image = req.image or outputs.training_image
    version = req.trl_version or IMAGE_TRL.get(image)
    if version is None:
        raise UsageError(f"unknown TRL version for image {image}",
                         "pass --trl-version X.Y (the TRL installed in that image) so arguments fit it")
    bucket = outputs.artifacts_bucket.removeprefix("gs://")
    name = req.display_name or f"hfgate-{label_value(req.model.split('/')[-1])}"
    if not DISPLAY_NAME_RE.match(name) or set(name) == {"."}:
        raise UsageError(f"--display-name {name[:40]!r} may hold only letters, digits, '.', '_' and '-' (at most 128,"
                         " not starting with '.', '_' or '-')", "change the option: it names the run's folder in the bucket,"
                         " e.g. --display-name txgemma-sft-v2")
    base_output = f"{outputs.artifacts_bucket}/runs/{name}"
    output_dir = f"/gcs/{bucket}/runs/{name}/model"
    if req.token_delivery is TokenDelivery.MIRROR and not (model_path and dataset_path and mirror_checks):
        raise UsageError("mirror delivery trains from the bucket",
                         "internal: pass model_path, dataset_path and mirror_checks")
    train_req = TrainRequest(**{**req.__dict__, "model": model_path or req.model,
                                "dataset": dataset_path or req.dataset})
    trainer = ["trl"] + trl_args(train_req, version, output_dir, cpu=not accel)
    # Cloud Logging gets lines, not progress bars.
    env = {"HF_HOME": "/tmp/hf", "TRL_USE_RICH": "0", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    if outputs.egress_mode == "proxy" and req.token_delivery is not TokenDelivery.MIRROR:
        env.update({"HTTPS_PROXY": outputs.proxy_url, "HTTP_PROXY": outputs.proxy_url,
                    "NO_PROXY": "metadata.google.internal,169.254.169.254,.googleapis.com,localhost,127.0.0.1"})
    if req.token_delivery is TokenDelivery.MIRROR:   # no token and no Hub at all: fail fast if anything tries
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(req.extra_env)
    if outputs.egress_mode == "proxy" and outputs.proxy_ca_certificate and req.token_delivery is not TokenDelivery.MIRROR:
        # The proxy inspects TLS to enforce the allowlist: the bootstrap adds its CA to the trust settings.
        env["HFGATE_PROXY_CA"] = outputs.proxy_ca_certificate
    if req.token_delivery is TokenDelivery.SECRET_REF:
        command, args = bootstrap_command(), trainer
        env["HFGATE_TOKEN_SECRET_VERSION"] = token_version
    elif req.token_delivery is TokenDelivery.MIRROR:
        command, args = bootstrap_command(), trainer
        env["HFGATE_VERIFY"] = json.dumps(mirror_checks, sort_keys=True)
    else:
        command, args = bootstrap_command(), trainer
        if not hf_token_value:
            raise UsageError("env delivery needs the token value", "internal: pass hf_token_value")
        env["HF_TOKEN"] = hf_token_value
    if req.checkpoint_every > 0 and version >= TRL_RESUMES_FROM:
        env["HFGATE_RESUME"] = "1"
    if req.replica_count > 1 or count > 1:   # one torchrun across every replica and every GPU of each
        env.update({"HFGATE_LAUNCH": "torchrun", "HFGATE_PROCS_PER_NODE": str(max(count, 1))})
    machine_spec = {"machine_type": machine}
    if accel:
        machine_spec.update(accelerator_type=accel, accelerator_count=count)
    container = {"image_uri": image, "command": command, "args": args,
                 "env": [{"name": k, "value": v} for k, v in sorted(env.items())]}
    pools = [{"machine_spec": machine_spec, "replica_count": 1, "container_spec": container,
              "disk_spec": {"boot_disk_type": boot_disk_type(machine), "boot_disk_size_gb": 200}}]
    if req.replica_count > 1:
        pools.append({**pools[0], "replica_count": req.replica_count - 1})
    scheduling: dict = {"timeout": f"{req.timeout_s}s"}
    if req.scheduling is not Scheduling.STANDARD:
        scheduling["strategy"] = req.scheduling.value
    if req.checkpoint_every > 0:   # a preempted or failed worker restarts the job, which resumes
        scheduling["restart_job_on_worker_restart"] = True
    spec = {"worker_pool_specs": pools, "service_account": outputs.trainer_email,
            "base_output_directory": {"output_uri_prefix": base_output}, "scheduling": scheduling}
    if outputs.egress_mode == "proxy" and outputs.network_attachment:
        spec["psc_interface_config"] = {"network_attachment": outputs.network_attachment}
    body = {"display_name": name, "job_spec": spec}
    if outputs.kms_key:   # CMEK applies to a CustomJob only through its own encryption_spec (Vertex AI CMEK page)
        body["encryption_spec"] = {"kms_key_name": outputs.kms_key}
    labels = {"managed-by": "hfgate", "hfgate-model": label_value(req.model),
              "hfgate-token-version": label_value(token_version.rsplit("/", 1)[-1]) if token_version else "none",
              "hfgate-token-fp": token_fingerprint or "none", "hfgate-delivery": req.token_delivery.value}
    if model_commit and re.fullmatch(r"[0-9a-f]{40}", model_commit):
        labels["hfgate-model-commit"] = model_commit     # what the preflight resolved the revision to (publish)
    hashed = json.loads(json.dumps(body))
    if req.token_delivery is TokenDelivery.ENV:   # the id must not be derivable from the token
        for pool in hashed["job_spec"]["worker_pool_specs"]:
            for e in pool["container_spec"]["env"]:
                if e["name"] == "HF_TOKEN":
                    e["value"] = token_fingerprint
    labels["hfgate-request-id"] = request_id({"body": hashed, "labels": labels, "nonce": req.nonce})
    body["labels"] = labels
    if env.get("HFGATE_RESUME") == "1":      # checkpoints are recorded for, and resumed by, this request only
        for spec in {id(p["container_spec"]): p["container_spec"] for p in body["job_spec"]["worker_pool_specs"]}.values():
            spec["env"] = sorted(spec["env"] + [{"name": "HFGATE_REQUEST_ID", "value": labels["hfgate-request-id"]}],
                                 key=lambda e: e["name"])
    return body

"""The pure CustomJob builder, without a network: egress modes, pools, delivery modes, trainer arguments."""
from __future__ import annotations

import json

import pytest

from jobs.errors import UsageError
from jobs.jobspec import BOOTSTRAP_SOURCE, TokenDelivery, TrainRequest, build_custom_job
from stacks.config import load_settings
from stacks.contract import outputs_from_settings


@pytest.fixture(scope="module")
def dev():
    return outputs_from_settings(load_settings("sandbox"), "123456789012")


@pytest.fixture(scope="module")
def local():
    return outputs_from_settings(load_settings("local"), "100000000001")


def build(outputs, **kw):
    opts = {k: kw.pop(k) for k in ("hf_token_value", "model_path", "dataset_path", "mirror_checks") if k in kw}
    return build_custom_job(TrainRequest(model="google/txgemma-2b-predict", dataset="org/chat", **kw), outputs,
                            token_version="projects/1/secrets/s/versions/3", token_fingerprint="abcd1234",
                            **opts)


def env_of(body, pool=0):
    return {e["name"]: e["value"] for e in body["job_spec"]["worker_pool_specs"][pool]["container_spec"]["env"]}


def test_proxy_mode_attaches_the_psc_interface_and_sets_the_proxy(dev):
    body = build(dev)
    env = env_of(body)
    assert env["HTTPS_PROXY"] == dev.proxy_url == env["HTTP_PROXY"]
    assert "metadata.google.internal" in env["NO_PROXY"] and ".googleapis.com" in env["NO_PROXY"]
    assert body["job_spec"]["psc_interface_config"]["network_attachment"] == dev.network_attachment
    assert body["job_spec"]["service_account"] == dev.trainer_email
    assert body["job_spec"]["base_output_directory"]["output_uri_prefix"].startswith(dev.artifacts_bucket + "/runs/")


def test_open_mode_has_no_proxy_and_no_attachment(local):
    body = build(local)
    assert "HTTPS_PROXY" not in env_of(body) and "psc_interface_config" not in body["job_spec"]


def test_secret_ref_carries_only_the_pinned_version(dev):
    body = build(dev)
    env = env_of(body)
    assert env["HFGATE_TOKEN_SECRET_VERSION"] == "projects/1/secrets/s/versions/3" and "HF_TOKEN" not in env
    cmd = body["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"]
    # The bootstrap travels in the spec itself: no bucket object decides what runs with the token.
    assert cmd[:2] == ["python3", "-c"] and cmd[2] == BOOTSTRAP_SOURCE and cmd[3] == "--"
    assert not any("/gcs/" in c for c in cmd)
    assert body["labels"]["hfgate-token-version"] == "3" and body["labels"]["hfgate-token-fp"] == "abcd1234"


def test_replica_count_adds_a_second_pool(dev):
    body = build(dev, replica_count=3)
    pools = body["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    assert pools[0]["machine_spec"] == pools[1]["machine_spec"]
    with pytest.raises(UsageError):
        build(dev, replica_count=0)


def test_machine_and_accelerator_are_validated_against_the_table(dev):
    body = build(dev, machine_type="a3-highgpu-8g")
    spec = body["job_spec"]["worker_pool_specs"][0]["machine_spec"]
    assert spec == {"machine_type": "a3-highgpu-8g", "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8}
    with pytest.raises(UsageError, match="hfgate machines"):
        build(dev, machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=3)


def test_cpu_only_machines_get_cpu_flags_and_float32(local):
    args = build(local)["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert args[args.index("--use_cpu") + 1] == "True" and args[args.index("--bf16") + 1] == "False"
    assert args[args.index("--dtype") + 1] == "float32"


def test_gpu_machines_default_to_bfloat16_and_lora(dev):
    args = build(dev, trl_version=(1, 16))["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert "--use_cpu" not in args and args[args.index("--dtype") + 1] == "bfloat16" and "--use_peft" in args


def test_old_trl_images_get_torch_dtype(dev):
    args = build(dev, trl_version=(0, 13))["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert "--torch_dtype" in args and "--dtype" not in args


def test_env_delivery_needs_the_value_and_keeps_it_out_of_the_request_id(dev):
    with pytest.raises(UsageError):
        build(dev, token_delivery=TokenDelivery.ENV)
    a = build(dev, token_delivery=TokenDelivery.ENV, hf_token_value="hf_" + "a" * 34)
    b = build(dev, token_delivery=TokenDelivery.ENV, hf_token_value="hf_" + "b" * 34)
    assert env_of(a)["HF_TOKEN"] == "hf_" + "a" * 34
    assert a["labels"]["hfgate-request-id"] == b["labels"]["hfgate-request-id"]   # derived from the fingerprint


def test_mirror_delivery_trains_from_the_bucket_offline_without_token_or_proxy(dev):
    with pytest.raises(UsageError):
        build(dev, token_delivery=TokenDelivery.MIRROR)
    checks = [{"dir": "/gcs/b/models/m/sha", "manifest_sha256": "1" * 64},
              {"dir": "/gcs/b/datasets/d/sha", "manifest_sha256": "2" * 64}]
    body = build(dev, token_delivery=TokenDelivery.MIRROR, model_path="/gcs/b/models/m/sha",
                 dataset_path="/gcs/b/datasets/d/sha", mirror_checks=checks)
    env = env_of(body)
    assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env and "HTTPS_PROXY" not in env
    assert "HFGATE_TOKEN_SECRET_VERSION" not in env
    # The bootstrap checks both folders against the manifests pinned at submit before trl starts.
    assert json.loads(env["HFGATE_VERIFY"]) == checks
    assert body["job_spec"]["worker_pool_specs"][0]["container_spec"]["command"][:2] == ["python3", "-c"]
    args = body["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert args[args.index("--model_name_or_path") + 1] == "/gcs/b/models/m/sha"
    assert args[args.index("--dataset_name") + 1] == "/gcs/b/datasets/d/sha"


def test_same_request_same_id_and_nonce_changes_it(dev):
    assert build(dev)["labels"]["hfgate-request-id"] == build(dev)["labels"]["hfgate-request-id"]
    assert build(dev)["labels"]["hfgate-request-id"] != build(dev, nonce="x")["labels"]["hfgate-request-id"]


@pytest.mark.parametrize("extra", [
    ["--model_name_or_path", "other/model"], ["--model_name_or_path=other/model"], ["--model-name-or-path", "x"],
    ["--model_name", "other/model"], ["--model_revision", "evil"], ["--dataset_name", "other/data"],
    ["--output_dir", "/gcs/elsewhere"], ["--output", "/tmp/x"], ["--config", "recipe.yaml"], ["--push_to_hub"],
    ["--hub_token", "hf_x"], ["--max_steps", "5"]])
def test_trainer_arguments_cannot_override_what_hfgate_checked(dev, extra):
    with pytest.raises(UsageError) as err:
        build(dev, extra_args=tuple(["--learning_rate", "2e-5", *extra]))
    assert "instead" in err.value.fix and "hf_x" not in str(err.value)


def test_tuning_arguments_pass_through(dev):
    body = build(dev, extra_args=("--learning_rate", "2e-5", "--lora_r", "8", "--gradient_checkpointing"))
    args = body["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"]
    assert args[-5:] == ["--learning_rate", "2e-5", "--lora_r", "8", "--gradient_checkpointing"]


@pytest.mark.parametrize("name", ["runs/x/../../..", "..", ".", "a/b", "x y", "-rf", ".hidden", "é", "a" * 129])
def test_display_names_that_would_escape_the_run_folder_are_refused(dev, name):
    with pytest.raises(UsageError):
        build(dev, display_name=name)


def test_a_plain_display_name_names_the_run_folder(dev):
    body = build(dev, display_name="txgemma-sft_v2.1")
    assert body["job_spec"]["base_output_directory"]["output_uri_prefix"] == f"{dev.artifacts_bucket}/runs/txgemma-sft_v2.1"


def test_cmek_environments_encrypt_every_job_with_their_key():
    """Vertex AI CMEK applies to a CustomJob only through its own encryption_spec; the key is the contract's."""
    prod = outputs_from_settings(load_settings("prod"), "123456789012")
    body = build(prod)
    assert body["encryption_spec"] == {"kms_key_name": prod.kms_key} and "/locations/europe-west4/" in prod.kms_key
    assert "encryption_spec" not in build(outputs_from_settings(load_settings("sandbox"), "1"))


def test_a3_ultra_machines_boot_from_hyperdisk(dev):
    """DiskSpec: A3 Ultra (a3-ultragpu-*) takes hyperdisk-balanced; other machines keep pd-ssd."""
    body = build(dev, machine_type="a3-ultragpu-8g", accelerator_type="NVIDIA_H200_141GB", accelerator_count=8)
    assert body["job_spec"]["worker_pool_specs"][0]["disk_spec"]["boot_disk_type"] == "hyperdisk-balanced"
    assert build(dev)["job_spec"]["worker_pool_specs"][0]["disk_spec"]["boot_disk_type"] == "pd-ssd"


def test_the_resolved_model_commit_is_a_label_and_part_of_the_request(dev):
    """What publish names in the model card: the commit the preflight resolved the revision to. Another commit of
    the same revision is another request (a run does not resume onto different base weights)."""
    from jobs.jobspec import TrainRequest, build_custom_job
    req = TrainRequest(model="google/txgemma-2b-predict", dataset="org/chat")
    a = build_custom_job(req, dev, token_version="v/1", token_fingerprint="f", model_commit="a" * 40)
    b = build_custom_job(req, dev, token_version="v/1", token_fingerprint="f", model_commit="b" * 40)
    assert a["labels"]["hfgate-model-commit"] == "a" * 40
    assert a["labels"]["hfgate-request-id"] != b["labels"]["hfgate-request-id"]
    bad = build_custom_job(req, dev, token_version="v/1", token_fingerprint="f", model_commit="main")
    assert "hfgate-model-commit" not in bad["labels"]           # only a full commit hash is recorded

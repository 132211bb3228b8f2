"""Hugging Face Jobs as a second backend: same preflight and trainer command, run through huggingface_hub's Jobs API.

The token read from Secret Manager at submit time goes in `secrets={"HF_TOKEN": value}`: stored encrypted by the
Hub and never shown by `inspect`. Never in `env` (shown in plain text to anyone who can see the job), and never the
literal "$HF_TOKEN" (the Python API does not expand it; the job would get that string as its token).
"""
from __future__ import annotations

import time

from jobs.errors import AccessDenied, HfgateError, Transient, UsageError
from jobs.token import HfToken
from stacks.errors import EXIT_OTHER

# Vertex accelerator (the one --accelerator vocabulary) and count -> HF Jobs flavor.
FLAVORS: dict[tuple[str | None, int], str] = {
    (None, 0): "cpu-upgrade",
    ("NVIDIA_TESLA_T4", 1): "t4-small",
    ("NVIDIA_L4", 1): "l4x1", ("NVIDIA_L4", 4): "l4x4",
    ("NVIDIA_A100_80GB", 1): "a100-large", ("NVIDIA_A100_80GB", 4): "a100x4", ("NVIDIA_A100_80GB", 8): "a100x8",
    ("NVIDIA_H200_141GB", 1): "h200", ("NVIDIA_H200_141GB", 2): "h200x2", ("NVIDIA_H200_141GB", 4): "h200x4",
    ("NVIDIA_H200_141GB", 8): "h200x8",
}
DEFAULT_IMAGE = "huggingface/trl"       # HF Jobs pulls public Docker Hub images; pass --image to pin one
TERMINAL = {"COMPLETED", "ERROR", "CANCELED", "DELETED"}


def flavor_for(accelerator: str | None, count: int) -> str:
    flavor = FLAVORS.get((accelerator or None, count if accelerator else 0))
    if flavor is None:
        options = ", ".join(f"{a or 'none'} x{c} -> {f}" for (a, c), f in FLAVORS.items())
        raise UsageError(f"Hugging Face Jobs has no flavor for {accelerator} x{count}",
                         f"pick one of: {options}; or pass --flavor NAME")
    return flavor


def trainer_command(args: list[str]) -> list[str]:
    return ["trl", *args]


def run(token: HfToken, command: list[str], *, image: str, flavor: str, namespace: str | None,
        labels: dict[str, str], timeout_s: int, env: dict[str, str] | None = None):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    value = token.reveal()
    env = dict(env or {})
    if any(v in ("$HF_TOKEN", "${HF_TOKEN}") for v in env.values()) or "HF_TOKEN" in env:
        raise UsageError("HF_TOKEN must not be in the job's environment",
                         "hfgate passes it as a secret; remove it from the env")
    try:
        return HfApi().run_job(image=image, command=command, env=env, secrets={"HF_TOKEN": value}, flavor=flavor,
                               timeout=timeout_s, labels=labels, namespace=namespace, token=value)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise AccessDenied(f"Hugging Face Jobs refused: {exc.server_message or status}",
                               "starting jobs needs a token allowed to run jobs in that namespace (write, or"
                               " fine-grained with job write); store one with `hfgate token set`, or use the"
                               " default Vertex AI backend with a read token") from None
        if status == 402:
            raise HfgateError("Hugging Face Jobs needs credit on the account", "add a payment method or credits at"
                              " https://huggingface.co/settings/billing", exit_code=EXIT_OTHER) from None
        if status in (429, 500, 502, 503, 504):
            raise Transient(f"Hugging Face Jobs did not answer ({status})", "try again later") from None
        raise HfgateError(f"Hugging Face Jobs rejected the job ({status}): {exc.server_message or exc}",
                          "check the options; --dry-run shows the request", exit_code=EXIT_OTHER) from None


def follow(token: HfToken, job_id: str, namespace: str | None, poll_s: float = 1.0,
           timeout_s: float = 24 * 3600):
    """("state", stage, elapsed) and ("log", line, elapsed) events until a terminal stage."""
    from huggingface_hub import HfApi
    api, value, t0, seen, last = HfApi(), token.reveal(), time.time(), 0, None
    while True:
        info = api.inspect_job(job_id=job_id, namespace=namespace, token=value)
        stage = info.status.stage
        if stage != last:
            yield "state", stage, round(time.time() - t0, 1)
            last = stage
        lines = list(api.fetch_job_logs(job_id=job_id, namespace=namespace, token=value))
        for line in lines[seen:]:
            yield "log", line, round(time.time() - t0, 1)
        seen = len(lines)
        if stage in TERMINAL:
            return
        if time.time() - t0 > timeout_s:
            raise Transient(f"job still {stage} after {timeout_s:.0f}s", "follow it on the Hub")
        time.sleep(poll_s)

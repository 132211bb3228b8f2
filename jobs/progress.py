"""Where a training run is, from the trainer's own log lines: step / max steps, loss, samples per second, elapsed
and ETA. Pure: the caller feeds log lines (the chief's: rank 0 alone logs steps) with their timestamps.

hfgate runs `trl sft` with `--logging_steps 1`, so every optimizer step logs one line like
`{'loss': '5.995', 'grad_norm': '2.314', 'learning_rate': '0.003', ..., 'epoch': '0.125'}`: the step is the count of
those lines (a resumed run restarts its count at the checkpoint: the ETA stays right, the step is a lower bound).
The total is the job's `--max_steps`, else it follows from the epoch the trainer reports and `--num_train_epochs`.
Samples per second: samples per step (per-device batch x gradient accumulation x processes, from the job spec)
over the time between step lines.
"""
from __future__ import annotations

import ast
import datetime as dt
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int | None
    loss: float | None
    samples_per_second: float | None
    elapsed_s: float | None
    eta_s: float | None
    epoch: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        parts = [f"step {self.step}/{self.max_steps}" if self.max_steps else f"step {self.step}"]
        if self.max_steps:
            parts[0] += f" ({100 * self.step // max(self.max_steps, 1)}%)"
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.samples_per_second is not None:
            parts.append(f"{self.samples_per_second:.3g} samples/s")
        if self.elapsed_s is not None:
            parts.append(f"{_hms(self.elapsed_s)} elapsed")
        if self.eta_s is not None:
            parts.append(f"ETA {_hms(self.eta_s)}")
        return " · ".join(parts)


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _ts(value: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def step_record(text: str) -> dict | None:
    """The trainer's per-step log dict, or None for any other line."""
    text = text.strip()
    if not (text.startswith("{'loss'") or text.startswith('{"loss"')) or not text.endswith("}"):
        return None
    try:
        data = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return data if isinstance(data, dict) and "loss" in data else None


def _arg(args: list[str], name: str, default: float | None) -> float | None:
    if name in args:
        try:
            return float(args[args.index(name) + 1])
        except (IndexError, ValueError):
            return default
    return default


def spec_facts(job) -> dict:
    """What the job spec says about the run's length and batch: max_steps, epochs, samples per step."""
    pools = list(job.job_spec.worker_pool_specs)
    if not pools:
        return {"max_steps": None, "epochs": None, "samples_per_step": None}
    args = list(pools[0].container_spec.args)
    env = {e.name: e.value for e in pools[0].container_spec.env}
    procs = int(env.get("HFGATE_PROCS_PER_NODE", "1") or 1)
    replicas = sum(p.replica_count for p in pools)
    batch = _arg(args, "--per_device_train_batch_size", 8)         # TrainingArguments' default
    accumulation = _arg(args, "--gradient_accumulation_steps", 1)
    max_steps = _arg(args, "--max_steps", None)
    return {"max_steps": int(max_steps) if max_steps and max_steps > 0 else None,
            "epochs": _arg(args, "--num_train_epochs", 3),          # TrainingArguments' default
            "samples_per_step": int(batch * accumulation * procs * replicas) if batch and accumulation else None}


class Tracker:
    def __init__(self, facts: dict, started: float | None = None) -> None:
        self.facts = facts
        self.started = started
        self.steps: list[tuple[float | None, dict]] = []

    def feed(self, text: str, timestamp: str = "") -> Progress | None:
        record = step_record(text)
        if record is None:
            return None
        self.steps.append((_ts(timestamp), record))
        return self.current()

    def current(self) -> Progress | None:
        if not self.steps:
            return None
        step = len(self.steps)
        last_t, last = self.steps[-1]

        def num(key):
            try:
                return float(last[key])
            except (KeyError, TypeError, ValueError):
                return None
        epoch = num("epoch")
        total = self.facts.get("max_steps")
        if total is None and epoch and self.facts.get("epochs"):
            total = max(step, round(step / epoch * self.facts["epochs"]))
        times = [t for t, _ in self.steps if t is not None]
        rate = None
        if len(times) >= 2 and times[-1] > times[0]:
            rate = (len(times) - 1) / (times[-1] - times[0])           # steps per second
        elif self.started and last_t and last_t > self.started:
            rate = step / (last_t - self.started)
        sps = rate * self.facts["samples_per_step"] if rate and self.facts.get("samples_per_step") else None
        elapsed = (last_t - self.started) if self.started and last_t else None
        eta = (total - step) / rate if rate and total is not None else None
        return Progress(step=step, max_steps=total, loss=num("loss"), samples_per_second=sps,
                        elapsed_s=elapsed, eta_s=eta, epoch=epoch)

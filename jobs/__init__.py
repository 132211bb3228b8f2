"""hfgate jobs: read the token at submit time, check it against the Hub, launch training. No provider imports.

The public Python API is `jobs.api`; its names are also reachable here (`jobs.submit`, `jobs.TrainRequest`, ...),
loaded on first use so that importing the package (and starting the CLI) stays cheap.
"""
import importlib

_API_NAMES = frozenset({
    "AccessDenied", "Backend", "HfToken", "HfgateError", "JobStatus", "LogLine", "MirrorResult", "NotFound", "Outputs",
    "PreflightFailed", "Progress", "Report", "Scheduling", "SetResult", "StateChange", "Submission", "TokenDelivery", "TokenError",
    "TrainRequest", "Transient", "UsageError", "cancel", "check", "follow", "load_outputs", "logs", "mirror",
    "PublishResult", "publish", "review_live", "set_token", "status", "submit", "token_status", "wait"})


def __getattr__(name: str):
    if name in _API_NAMES:
        return getattr(importlib.import_module("jobs.api"), name)
    raise AttributeError(f"module 'jobs' has no attribute {name!r}")

"""No library debug switch may print the token.

Three kinds of switch in a user's environment would otherwise do it, whatever hfgate itself logs:
- `GOOGLE_SDK_PYTHON_LOGGING_SCOPE` (google-api-core request logging) logs Secret Manager responses, the payload
  base64-encoded;
- `HF_DEBUG` logs every Hub request as a curl command with its body (a Hugging Face Jobs request carries the token
  among its secrets); `GRPC_TRACE` dumps gRPC frames, payloads included;
- at INFO/DEBUG, HTTP clients log every URL, including the signed CDN URL a gated download is redirected to (that
  URL downloads the file with no credential).

`harden()` turns the first two off for this process (saying so on stderr) and puts `RedactingFilter` on every log
handler, which removes URL query strings and anything shaped like a Hugging Face token from every record.
"""
from __future__ import annotations

import logging
import os
import re
import sys

DEBUG_SWITCHES = {
    "GOOGLE_SDK_PYTHON_LOGGING_SCOPE": "it logs Secret Manager payloads, the token among them",
    "HF_DEBUG": "it logs request bodies, Hugging Face Jobs secrets among them",
    "GRPC_TRACE": "it dumps gRPC frames, Secret Manager payloads among them",
}
TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
QUERY_RE = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")


def redact(text: str) -> str:
    return TOKEN_RE.sub("hf_<redacted>", QUERY_RE.sub(r"\1?<query redacted>", text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its traceback) with URL queries and token-shaped strings removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message), None
        return True


_FILTER = RedactingFilter()


def _filter_handlers(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def harden(warn=sys.stderr) -> list[str]:
    """Call before any client is created. Returns the switches it turned off."""
    ignored = [name for name in DEBUG_SWITCHES if os.environ.pop(name, None) not in (None, "", "0")]
    if "huggingface_hub.constants" in sys.modules:       # read at import: turn it off there too
        sys.modules["huggingface_hub.constants"].HF_DEBUG = False
    for name in ignored:
        print(f"hfgate: warning: ignoring {name}: {DEBUG_SWITCHES[name]}", file=warn)
    install_filters()
    return ignored


def install_filters() -> None:
    """On the root logger's handlers and on those of libraries that log through handlers of their own."""
    _filter_handlers(logging.getLogger())
    if os.environ.get("HF_HUB_VERBOSITY") or "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import logging as hf_logging
        _filter_handlers(hf_logging.get_logger())
    for name in ("google", "urllib3", "httpx", "httpcore", "grpc"):
        _filter_handlers(logging.getLogger(name))

"""The token as a value that never shows itself, and the shape checks that need no network."""
from __future__ import annotations

import hashlib
import re

TOKEN_RE = re.compile(r"^hf_[A-Za-z]{34}$")
PLACEHOLDERS = {"$HF_TOKEN", "${HF_TOKEN}", "$HUGGING_FACE_HUB_TOKEN", "${HUGGING_FACE_HUB_TOKEN}", "%HF_TOKEN%"}


class HfToken:
    """Holds the token. `str`, `repr` and f-strings show only a fingerprint; `.reveal()` is the one way out."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        """First 8 hex of SHA-256: enough to tell tokens apart in logs and labels, useless to an attacker."""
        return hashlib.sha256(self._value.encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"HfToken(sha256:{self.fingerprint})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self):
        raise TypeError("HfToken cannot be pickled")

    def __eq__(self, other) -> bool:
        return isinstance(other, HfToken) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def shape_problem(value: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) for a token that cannot be right whatever the Hub says, or None."""
    if value == "":
        return "the token is empty", "store the token itself: hfgate token set --env ENV (reads stdin)"
    if value.strip() == "":
        return "the token is only whitespace", "store the token itself: hfgate token set --env ENV"
    stripped = value.strip()
    if stripped in PLACEHOLDERS or stripped.startswith("$"):
        # Never echo it: `$hf_...` is a real token behind a stray `$`.
        return ("the token starts with '$': a shell variable name or placeholder, not its value",
                "pass the value: `printenv HF_TOKEN | hfgate token set` (Python APIs do not expand \"$HF_TOKEN\")")
    if stripped[:1] in "\"'" or stripped[-1:] in "\"'":
        return "the token is wrapped in quotes", "store it without quotes"
    if stripped.lower().startswith("bearer "):
        return "the token starts with 'Bearer '", "store only the hf_... part, without the 'Bearer ' prefix"
    if value != stripped:
        return "the token has leading or trailing whitespace", "store it without spaces or newlines"
    if not stripped.startswith("hf_"):
        return ("the token does not start with hf_ (Hugging Face user access tokens do)",
                "create a token at https://huggingface.co/settings/tokens and store that")
    if not TOKEN_RE.match(stripped):
        return ("the token is not hf_ followed by 34 letters: truncated or pasted with extra characters",
                "copy the whole token again from https://huggingface.co/settings/tokens")
    return None

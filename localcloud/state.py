"""Shared state of the local cloud: principals and their access tokens, IAM grants, and the seed that fills them."""
from __future__ import annotations

import secrets
import string
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SEED = Path(__file__).with_name("seed.toml")


def hf_token() -> str:
    """A token of the Hub's shape (hf_ + 34 letters), made at run time: nothing token-like is ever committed."""
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


@dataclass
class Grants:
    """The local cloud's IAM bindings: (member, role, resource) triples, resource as `kind:id` (`project:P`,
    `bucket:B`, `secret:S`, `serviceAccount:E`, ...) or "*", the top of the hierarchy. localcloud.iam evaluates them."""

    triples: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, member: str, role: str, resource: str = "*") -> None:
        self.triples.add((member, role, resource))


class Identities:
    """Who holds which OAuth access token (issued by the metadata server)."""

    def __init__(self) -> None:
        self._by_token: dict[str, tuple[str, float]] = {}     # token -> (member, when it expires)
        self._lock = threading.Lock()

    def issue(self, member: str, lifetime_s: float = 3600.0) -> str:
        """A token for `member`, good for `lifetime_s` (an hour, as Google's access tokens; the metadata server
        says expires_in 3599): after that every service answers as for unknown credentials."""
        token = "ya29.local-" + secrets.token_urlsafe(24)
        with self._lock:
            self._by_token[token] = (member, time.monotonic() + lifetime_s)
        return token

    def member_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        held = self._by_token.get(authorization[7:].strip())
        if held is None or time.monotonic() >= held[1]:
            return None
        return held[0]


@dataclass
class Seed:
    raw: dict

    @classmethod
    def load(cls, path: Path | None = None) -> "Seed":
        return cls(tomllib.loads((path or DEFAULT_SEED).read_text()))

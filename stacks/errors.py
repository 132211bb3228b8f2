"""The one error type users meet: a message, the fix, and a documented exit code.

Exit codes (README, `hfgate --help`): 0 ok, 1 other, 2 usage/config, 3 token invalid or malformed,
4 access denied, 5 not found, 6 network/transient after bounded retries.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_TOKEN = 3
EXIT_ACCESS = 4
EXIT_NOT_FOUND = 5
EXIT_TRANSIENT = 6


class HfgateError(Exception):
    """A failure the user can act on. `fix` says what to do next."""

    exit_code = EXIT_OTHER

    def __init__(self, message: str, fix: str = "", *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class UsageError(HfgateError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """Invalid environment settings; lists every problem, each naming its field and fix."""

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {field}: {why}" for field, why in problems)
        super().__init__(f"invalid configuration in {path}:\n{lines}",
                         f"edit {path} and run the command again; nothing was written")

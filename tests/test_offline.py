"""Nothing leaves loopback: the demo and the suite make no DNS lookup of, and no connection to, anything outside
127.0.0.1 (tests/netguard records every attempt in any Python process the suite starts), and the one Google host the
clients reach by name (google-auth's Regional Access Boundary lookup) is answered by the local cloud's gateway."""
from __future__ import annotations

from tests.conftest import hfgate, netguard_lines, set_token
from tests.test_submit import DATASET, GATED


def test_the_demo_prints_no_retry_and_stays_on_loopback(demo_run):
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "Retrying" not in out and "iamcredentials" not in out
    assert [line for line in netguard_lines() if "localcloud.demo" in line or "trl" in line] == []


def test_metadata_credentials_look_up_their_boundary_on_the_local_cloud(cloud):
    set_token(cloud, cloud.hub_tokens["alice-read"])
    before, refused = len(cloud.boundary_lookups), len(cloud.gateway.refused)
    proc = hfgate(cloud, "check", "--model", GATED)
    assert proc.returncode == 0, proc.stderr
    assert "Retrying" not in proc.stderr
    assert len(cloud.boundary_lookups) > before
    assert cloud.boundary_lookups[-1] == cloud.outputs.submitter_email
    assert cloud.gateway.refused[refused:] == []


def test_in_process_calls_leave_no_boundary_lookup_behind(cloud):
    """google-auth looks up the boundary in a background thread that reads the proxy settings when it sends: a test
    that calls the local cloud in-process (cloud.environ) puts its environment back only once those threads are
    done, so none of them can go out by name after the settings are gone (a CI run caught one doing so)."""
    import threading

    from jobs import endpoints, vertex
    before = len(cloud.boundary_lookups)
    with cloud.environ():
        client = endpoints.vertex(cloud.outputs.region)
        list(client.list_custom_jobs(parent=vertex._parent(cloud.outputs)))
    assert [t for t in threading.enumerate() if type(t).__name__ == "_RegionalAccessBoundaryRefreshThread"] == []
    assert len(cloud.boundary_lookups) > before


def test_the_gateway_refuses_every_other_host(cloud):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", cloud.gateway.port, timeout=10)
    conn.request("CONNECT", "huggingface.co:443")
    assert conn.getresponse().status == 403
    assert cloud.gateway.refused[-1] == "huggingface.co:443"


def test_nothing_in_this_session_has_left_loopback_so_far():
    assert netguard_lines() == []


__all__ = ["DATASET"]

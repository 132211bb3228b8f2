"""The Hub's download protocol table (stacks/hub_protocol.py): every row cited, checked against the pinned clients."""
from __future__ import annotations

import inspect
import re

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.utils import _xet

from stacks import facts, hub_protocol
from stacks.hub_protocol import DOWNLOAD, HOSTS, NOT_DOWNLOAD_HOSTS, NOT_NEEDED, ROLES


def test_every_host_and_shape_has_a_role_and_a_source():
    assert len({h.name for h in HOSTS}) == len(HOSTS)
    for host in HOSTS:
        assert host.role in ROLES and host.source.strip(), host
    served = {h.role for h in HOSTS}
    for shape in DOWNLOAD + NOT_NEEDED:
        assert shape.role in served or shape in NOT_NEEDED and shape.role == hub_protocol.VIEWER_ROLE, shape
        assert shape.source.strip() and shape.purpose.strip() and shape.methods, shape
        assert set(shape.kinds) <= {"model", "dataset"} and shape.kinds, shape
        # Only the Hub's own paths name a repository; content hosts are addressed by hash.
        assert shape.repo_scoped == ("{model}" in shape.path or "{dataset}" in shape.path), shape
    # Downloads read: no write method is ever needed.
    assert {m for s in DOWNLOAD for m in s.methods} <= {"GET", "HEAD"}


def test_datasets_server_is_not_a_download_host():
    """It serves the rows of any dataset, listed or not: no rule derived from the table may reach it."""
    assert "datasets-server.huggingface.co" in NOT_DOWNLOAD_HOSTS
    assert not set(NOT_DOWNLOAD_HOSTS) & set(hub_protocol.hosts())


def test_facts_reads_the_table():
    assert facts.HF_KNOWN_HOSTS == hub_protocol.hosts()
    assert facts.HF_HUB_HOST == "huggingface.co" == hub_protocol.hosts("hub")[0]
    assert all(facts.host_allowed(h) for h in hub_protocol.hosts())


def test_the_table_matches_the_pinned_client():
    """The versions cited are the installed ones, and the Xet headers and token route are the client's."""
    assert hub_protocol.HF_HUB.endswith(huggingface_hub.__version__)
    from importlib.metadata import version
    assert version("hf-xet") in hub_protocol.HF_XET
    url = _xet.xet_connection_info_refresh_url(token_type=_xet.XetTokenType.READ, repo_id="org/name",
                                               repo_type="dataset", revision="main", endpoint="https://huggingface.co")
    assert url == "https://huggingface.co/api/datasets/org/name/xet-read-token/main"
    token_routes = [s.path for s in DOWNLOAD if "xet-read-token" in s.path]
    assert token_routes == ["/api/models/{model}/xet-read-token/{rev}", "/api/datasets/{dataset}/xet-read-token/{rev}"]
    token_row = next(s for s in DOWNLOAD if s.path.endswith("xet-read-token/{rev}"))
    for header in (constants.HUGGINGFACE_HEADER_X_XET_ENDPOINT, constants.HUGGINGFACE_HEADER_X_XET_ACCESS_TOKEN,
                   constants.HUGGINGFACE_HEADER_X_XET_EXPIRATION):
        assert header in token_row.purpose
    assert "parse_xet_connection_info_from_headers" in inspect.getsource(_xet._fetch_xet_connection_info_with_url)


def test_shapes_filters_by_role_and_kind():
    cas = hub_protocol.shapes("xet-cas")
    assert {s.path for s in cas} == {"/v1/reconstructions/{hash}", "/v2/reconstructions/{hash}"}
    assert all("dataset" in s.kinds for s in hub_protocol.shapes(kind="dataset"))
    assert hub_protocol.hosts("xet-transfer") == ("transfer.xethub.hf.co", "transfer.xethub-eu.hf.co")


def _shape_regex(template: str) -> re.Pattern:
    parts = {"{model}": "[^/]+/[^/]+", "{dataset}": "[^/]+/[^/]+", "{rev}": "[^/]+", "{file}": ".+",
             "{hash}": "[0-9a-f]{64}", "{anything}": ".*"}
    rx = re.escape(template).replace(r"\[", "(?:").replace(r"\]", ")?")
    for name, sub in parts.items():
        rx = rx.replace(re.escape(name), sub)
    return re.compile("^" + rx + "$")


def _row_in(shapes, row: dict, kind: str | None) -> bool:
    path = (row["path"].replace("{model}", "org/m").replace("{dataset}", "org/d").replace("{unlisted}", "org/u")
            .replace("{rev}", "main").replace("{oid}", "0" * 64))
    host_roles = {h.name: h.role for h in HOSTS} | {h: hub_protocol.VIEWER_ROLE for h in NOT_DOWNLOAD_HOSTS}
    return any(host_roles.get(row["host"]) == s.role and row["method"] in s.methods
               and _shape_regex(s.path.split("?")[0]).match(path) and (kind is None or kind in s.kinds)
               for s in shapes)


def test_the_recorded_traffic_of_real_clients_is_in_the_table():
    """review/traffic/recorded.jsonl (the real trl sft, hf download, with Xet on and off): every request a download
    made is a DOWNLOAD row, every request it did not need a NOT_NEEDED row, and the Xet route is in it."""
    from review.egress import load_recording
    rows = load_recording()
    assert rows
    for row in rows:
        kind = "dataset" if "{dataset}" in row["path"] else "model" if "{model}" in row["path"] else None
        if row["expect"] == "allow":
            assert _row_in(DOWNLOAD, row, kind), f"a download made a request the table does not list: {row}"
        elif "{unlisted}" not in row["path"] and row["method"] in ("GET", "HEAD"):
            assert _row_in(NOT_NEEDED, row, None) and not _row_in(DOWNLOAD, row, None), row
    observed = [s for s in DOWNLOAD if any(_row_in((s,), r, None) for r in rows if r["expect"] == "allow")]
    assert {s.role for s in observed} == {"hub", "xet-cas", "xet-transfer", "xet-bridge", "lfs-cdn"}
    assert any("xet-read-token" in s.path for s in observed)

"""What the operator verbs print (pure rendering of the control plane's and sidecars' JSON)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from sandbox.control.ca import MeshCA
from sandbox.operator.views import age, not_synced, proxy_status_table, resources_output, secrets_table
from sandbox.proxy.admin import certs_json


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "<none>"),
        (-3, "0s"),
        (45, "45s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (4 * 3600 + 60, "4h1m"),
        (20 * 3600, "20h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
    ],
)
def test_ages_read_like_kubectl(seconds: float | None, text: str) -> None:
    assert age(seconds) == text


def proxy(node: str, state: str, **extra: Any) -> dict[str, Any]:
    base = {"proxy": node, "workload": node, "namespace": "default", "state": state, "connected": True}
    base |= {"versionCurrent": "bbb", "versionSent": "bbb", "versionAcked": "aaa", "sinceLastAck": 3.2}
    base |= {"nackVersion": "", "nackReason": ""}
    return base | extra


def test_proxy_status_names_the_state_version_last_ack_and_why() -> None:
    text = proxy_status_table(
        [
            proxy("web-v1", "SYNCED", versionAcked="bbb", mtls="STRICT"),
            proxy("api-v1", "NACK", nackVersion="bbb", nackReason="unknown cluster x", mtls="PERMISSIVE"),
            proxy("db-v1", "STALE", mtls="DISABLE"),
        ],
        [("web-v1", "web-v1", "default"), ("cache-v1", "cache-v1", "default")],
    )
    rows = [line.split(None, 6) for line in text.splitlines()]
    assert rows[0] == ["NAME", "WORKLOAD", "STATUS", "MTLS", "VERSION", "LAST", "ACK  REASON"]
    assert rows[1] == ["cache-v1.default", "cache-v1", "DISCONNECTED", "-", "-", "never", "never connected"]
    assert rows[2][:6] == ["web-v1.default", "web-v1", "SYNCED", "STRICT", "bbb", "3s"]
    assert rows[3][2:4] == ["NACK", "PERMISSIVE"] and rows[3][6].endswith("rejected bbb: unknown cluster x")
    assert rows[4][2:4] == ["STALE", "DISABLE"] and "waiting for its ACK" in rows[4][6]
    assert proxy_status_table([proxy("gw", "SYNCED")]).splitlines()[1].split()[3] == "-"  # a gateway: none


def test_not_synced_lists_pending_files_stale_and_missing_proxies() -> None:
    sync = {"pending": ["istio/a.yaml"], "proxies": [proxy("web-v1", "SYNCED"), proxy("api-v1", "STALE")]}
    assert not_synced(sync, ["web-v1", "api-v1", "db-v1"]) == [
        "pending: istio/a.yaml (changed on disk, not applied yet)",
        "api-v1: STALE (current bbb, acked aaa)",
        "db-v1: not connected to the control plane",
    ]
    gone = {"pending": [], "proxies": [proxy("web-v1", "DISCONNECTED", connected=False)]}
    assert not_synced(gone) == []  # only connected sidecars are waited for, unless the mesh expects them


def test_one_resource_prints_as_an_object_several_as_a_list() -> None:
    def resource(name: str) -> dict[str, Any]:
        manifest = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name}}
        return {
            "name": name,
            "namespace": "default",
            "file": "/p/istio/vs.yaml",
            "line": 1,
            "applied": 90.0,
            "manifest": manifest,
        }

    assert json.loads(resources_output([resource("a")], "json", 100.0))["metadata"] == {"name": "a"}
    listed = json.loads(resources_output([resource("a"), resource("b")], "json", 100.0))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert resources_output([resource("a"), resource("b")], "yaml", 100.0).count("kind: VirtualService") == 2
    table = resources_output([resource("a")], "table", 100.0, cwd="/p")
    assert table.splitlines()[1].split() == ["a", "default", "10s", "istio/vs.yaml:1"]


def test_secrets_show_the_certificate_and_the_root_never_a_key(tmp_path: Path) -> None:
    ca = MeshCA.load_or_create(tmp_path)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = ca.issue("default", "web", now=now)
    certs = certs_json(cert, now=now)  # what the sidecar's /certs says
    lines = secrets_table(certs, now.strftime("%Y-%m-%dT%H:%M:%S")).splitlines()
    assert lines[0].split()[:8] == ["RESOURCE", "NAME", "TYPE", "STATUS", "VALID", "CERT", "SERIAL", "NUMBER"]
    workload, root = lines[1].split(), lines[2].split()
    assert workload[:7] == ["default", "Cert", "Chain", "ACTIVE", "true", f"{cert.serial:x}", cert.spiffe_id]
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    not_after, not_before = now + dt.timedelta(days=1), now - dt.timedelta(minutes=1)
    assert workload[7:] == [not_after.strftime(stamp), not_before.strftime(stamp)]
    assert root[:5] == ["ROOTCA", "CA", "ACTIVE", "true", f"{ca.root_cert.serial_number:x}"]
    fingerprint = ca.root_cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert lines[3] == f"ROOTCA SHA-256 fingerprint: {fingerprint}"
    assert "PRIVATE" not in "\n".join(lines)
    later = (now + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    assert secrets_table(certs, later).splitlines()[1].split()[4] == "false"  # expired
    assert "no workload certificate" in secrets_table({"certificates": []})

"""Proxy status as JSON for ``GET /meshplane/v1/proxies`` (and so ``meshplane proxy-status``).

Called by ``meshplane.server.run``; reads the xDS server's immutable status records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from meshplane.xds import ProxyStatus, types


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def proxy_status_json(
    status: ProxyStatus, *, admin: str | None = None, problems: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "admin": admin,
        "problems": list(problems),
        "stream": status.stream_id,
        "nodeId": status.node_id,
        "mesh": status.identity.mesh,
        "kind": status.identity.kind.value,
        "name": status.identity.name,
        "peer": status.peer,
        "connectedSince": _time(status.connected_since),
        "protocol": status.kind,
        "types": {
            types.short_name(url): {
                "sentVersion": t.sent_version,
                "ackedVersion": t.acked_version,
                "synced": t.synced,
                "resources": t.resources,
                "lastNack": None
                if t.last_nack is None
                else {
                    "version": t.last_nack.version,
                    "error": t.last_nack.error,
                    "at": _time(t.last_nack.at),
                },
            }
            for url, t in status.types.items()
        },
    }

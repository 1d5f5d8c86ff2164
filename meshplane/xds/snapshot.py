"""An immutable, per-proxy set of xDS resources.

A :class:`Snapshot` is what a producer publishes for one proxy (or one group of proxies that
share a node key): every Cluster, ClusterLoadAssignment, Listener, RouteConfiguration and
Secret it should have, as :class:`~meshplane.xds.resource.Resource` objects.  Messages handed in
are wrapped (and serialized) on the way in; pass :class:`Resource` objects to share one
serialization between many snapshots.  :meth:`Snapshot.consistent` checks that every
reference resolves (EDS names of clusters, RDS names of listeners, clusters of routes, secrets).

Called by producers (the control loop), the snapshot cache and the ADS stream planner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from meshplane.errors import BadRequestError
from meshplane.xds import types
from meshplane.xds._proto import Message
from meshplane.xds.resource import Ref, Resource

_EMPTY: Mapping[str, Resource] = MappingProxyType({})


class SnapshotError(BadRequestError):
    """A snapshot with duplicate resource names or unresolved references."""


class Snapshot:
    """Resources by type URL and name.  Immutable once built."""

    __slots__ = ("_by_type", "_users", "_versions")

    def __init__(self, resources: Iterable[Resource | Message] = ()) -> None:
        by_type: dict[str, dict[str, Resource]] = {}
        for item in resources:
            resource = item if isinstance(item, Resource) else Resource.of(item)
            named = by_type.setdefault(resource.type_url, {})
            if resource.name in named:
                raise SnapshotError(
                    f"duplicate {types.short_name(resource.type_url)} resource {resource.name!r}"
                )
            named[resource.name] = resource
        self._by_type: Mapping[str, Mapping[str, Resource]] = MappingProxyType(
            {url: MappingProxyType(named) for url, named in by_type.items()}
        )
        self._versions: dict[str, str] = {}
        self._users: dict[Ref, frozenset[str]] | None = None

    @property
    def resources(self) -> Mapping[str, Mapping[str, Resource]]:
        """``{type_url: {name: Resource}}``."""
        return self._by_type

    def get(self, type_url: str) -> Mapping[str, Resource]:
        """The resources of one type by name (empty if none)."""
        return self._by_type.get(type_url, _EMPTY)

    def version(self, type_url: str) -> str:
        """A short content hash of every resource of ``type_url`` (names and versions)."""
        version = self._versions.get(type_url)
        if version is None:
            version = content_version(self.get(type_url).values())
            self._versions[type_url] = version
        return version

    def users(self, ref: Ref) -> frozenset[str]:
        """Names of the resources (of any type) in this snapshot that reference ``ref``."""
        if self._users is None:
            users: dict[Ref, set[str]] = {}
            for named in self._by_type.values():
                for resource in named.values():
                    for target in resource.refs:
                        users.setdefault(target, set()).add(resource.name)
            self._users = {target: frozenset(names) for target, names in users.items()}
        return self._users.get(ref, frozenset())

    def missing(self) -> list[tuple[Resource, Ref]]:
        """Every ``(resource, reference)`` whose target is not in this snapshot."""
        return [
            (resource, ref)
            for named in self._by_type.values()
            for resource in named.values()
            for ref in sorted(resource.refs)
            if ref[1] not in self.get(ref[0])
        ]

    def inconsistencies(self) -> list[str]:
        """Every unresolved reference, phrased for ``proxy-status``."""
        return [
            f"{types.short_name(r.type_url)} {r.name!r} references missing "
            f"{types.short_name(ref[0])} {ref[1]!r}"
            for r, ref in self.missing()
        ]

    def consistent(self) -> None:
        """Raise :class:`SnapshotError` naming every unresolved reference, if any."""
        problems = self.inconsistencies()
        if problems:
            raise SnapshotError("inconsistent snapshot: " + "; ".join(problems))

    def __len__(self) -> int:
        return sum(len(named) for named in self._by_type.values())

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{types.short_name(url)}={len(named)}" for url, named in sorted(self._by_type.items())
        )
        return f"Snapshot({counts})"


def content_version(resources: Iterable[Resource]) -> str:
    """A short hash of the names and versions of ``resources`` (order does not matter)."""
    return versions_hash((r.name, r.version) for r in resources)


def versions_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """A short hash of ``(name, version)`` pairs (order does not matter)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, version in sorted(pairs):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(version.encode())
        digest.update(b"\n")
    return digest.hexdigest()

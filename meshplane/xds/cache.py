"""The snapshot cache: the current :class:`Snapshot` of every node key, and who to wake.

A producer publishes with :meth:`SnapshotCache.set_snapshot` (a whole snapshot, swapped in
atomically); every ADS stream of that key is woken and works out, on its own, what its Envoy
still needs.  Keys are strings: a node id, its ARN form and a :class:`ProxyIdentity` all
address the same entry (their node key, :func:`meshplane.model.proxy.node_key`); any other
string is a producer's own snapshot key (:class:`~meshplane.xds.producer.SnapshotKeyer`: the
control loop keys proxies by identity and translation options, so gateway replicas bound to
the same address share a snapshot and replicas bound elsewhere get their own) and is used as
it is.

Thread-safe: ``set_snapshot``/``remove`` may be called from any thread; watchers are plain
callables (the ADS streams pass ones that hop onto their event loop).

Called by producers (the control loop, tests) and by the ADS server's streams (``get``,
``watch``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from meshplane.model.proxy import InvalidNodeIdError, ProxyIdentity, node_key
from meshplane.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

Watcher = Callable[[], None]


def cache_key(node: str | ProxyIdentity) -> str:
    """The entry of ``node``: the node key of an identity or node id, else the string itself."""
    if isinstance(node, ProxyIdentity):
        return node.key
    if node.count("/") != 3:  # not a node id (a snapshot key with an options digest)
        return node
    try:
        return node_key(node)
    except InvalidNodeIdError:
        return node


class SnapshotCache:
    """Snapshots by key, with change notification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, set[Watcher]] = {}

    def set_snapshot(self, node: str | ProxyIdentity, snapshot: Snapshot) -> None:
        """Publish ``snapshot`` for ``node`` (a node id, identity or snapshot key) and wake its
        streams."""
        key = cache_key(node)
        with self._lock:
            self._snapshots[key] = snapshot
            watchers = list(self._watchers.get(key, ()))
        self._notify(watchers)

    def get(self, node: str | ProxyIdentity) -> Snapshot | None:
        """The current snapshot of ``node``, or None."""
        with self._lock:
            return self._snapshots.get(cache_key(node))

    def remove(self, node: str | ProxyIdentity) -> None:
        """Forget the snapshot of ``node``.  Connected streams keep what they have."""
        with self._lock:
            self._snapshots.pop(cache_key(node), None)

    def keys(self) -> list[str]:
        """Keys that have a snapshot."""
        with self._lock:
            return sorted(self._snapshots)

    def watch(self, node: str | ProxyIdentity, watcher: Watcher) -> Callable[[], None]:
        """Call ``watcher()`` after every ``set_snapshot`` of ``node``; returns the unwatch."""
        key = cache_key(node)
        with self._lock:
            self._watchers.setdefault(key, set()).add(watcher)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(watcher)
                    if not watchers:
                        del self._watchers[key]

        return unwatch

    @staticmethod
    def _notify(watchers: list[Watcher]) -> None:
        for watcher in watchers:
            try:
                watcher()
            except Exception:  # a closed stream's loop; never fail the producer
                log.exception("snapshot watcher failed")

"""Incremental ADS (``DeltaAggregatedResources``): requests in, responses out.

Request handling, per ``type_url``:

- Subscription changes (``resource_names_subscribe``/``_unsubscribe``, ``*`` for wildcard) are
  honoured even when the nonce is stale.  The first request of a type with no names is a
  (legacy) wildcard subscription.  Subscribing again to a name the client already has makes the
  server send it again.
- ``initial_resource_versions`` (first request after a reconnect) seeds what the client has;
  resources whose version still matches the snapshot are not sent again.
- A request answering the in-flight response (by nonce) is its ACK, or a NACK with
  ``error_detail``; stale nonces are not treated as ACK/NACK.

Responses carry only what changed: resources whose version differs from what the client has,
and ``removed_resources`` for wildcard-type resources that left the desired set, or for
subscribed names that do not exist (reported once; sent when they appear).  The first answer to
a wildcard subscription is sent even when empty, so Envoy finishes its initial fetch.

Called by :mod:`meshplane.xds.server`.
"""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from meshplane.xds import types
from meshplane.xds.resource import Resource
from meshplane.xds.snapshot import Snapshot, versions_hash
from meshplane.xds.stream import Draft, Stream, TypeState


def handle(
    stream: Stream, request: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot | None
) -> None:
    """Apply one request to the stream's state."""
    type_url = request.type_url
    state = stream.state(type_url)
    nonce = request.response_nonce
    if nonce and not stream.is_stale(state, nonce):
        error = request.error_detail.message if request.HasField("error_detail") else None
        if request.HasField("error_detail") and not error:
            error = f"rejected (gRPC status {request.error_detail.code}, no message)"
        stream.settle(type_url, nonce, error)
    first = not state.requested
    state.requested = True
    if first:
        current = snapshot.get(type_url) if snapshot is not None else {}
        for name, version in request.initial_resource_versions.items():
            state.acked[name] = version
            resource = current.get(name)
            if resource is not None and resource.version == version:
                state.held[name] = resource
        state.wildcard = not request.resource_names_subscribe
    for name in request.resource_names_subscribe:
        if name == "*":
            state.wildcard = True
            continue
        state.names.add(name)
        state.absent_reported.discard(name)
        if not first and name in state.acked:
            state.force.add(name)
    for name in request.resource_names_unsubscribe:
        if name == "*":
            state.wildcard = False
            continue
        state.names.discard(name)
        state.force.discard(name)
        state.absent_reported.discard(name)
        if not state.wildcard:
            state.acked.pop(name, None)
            state.held.pop(name, None)


def is_quiet_ack(
    stream: Stream, request: discovery_pb2.DeltaDiscoveryRequest, snapshot: Snapshot | None
) -> bool:
    """``request`` only ACKs the response in flight (no error, no subscription change) and
    that ACK leaves nothing to send (:meth:`Stream.settles_quietly`): :func:`handle` would only
    settle it."""
    return (
        not request.HasField("error_detail")
        and not request.resource_names_subscribe
        and not request.resource_names_unsubscribe
        and not request.initial_resource_versions
        and stream.settles_quietly(snapshot, request.type_url, request.response_nonce)
    )


def build(
    type_url: str, state: TypeState, desired: dict[str, Resource | None], snapshot: Snapshot
) -> Draft | None:
    """The incremental response to send for ``type_url``, or None when nothing changed."""
    content: dict[str, Resource] = {}
    for name, resource in desired.items():
        if resource is None:  # keep the client's version; resend it only when forced
            held = state.held.get(name)
            if name in state.force and held is not None:
                content[name] = held
        elif state.acked.get(name) != resource.version or name in state.force:
            content[name] = resource
    if state.wildcard or type_url in types.FULL_STATE:
        removed = {name for name in state.acked if name not in desired}
    else:
        removed = set()
    current = snapshot.get(type_url)
    removed.update(
        name
        for name in state.names
        if name not in desired and name not in current and name not in state.absent_reported
    )
    must_answer = not state.answered and state.wildcard
    if not content and not removed and not must_answer:
        return None
    after = dict(state.acked)
    for name in removed:
        after.pop(name, None)
    after.update((name, r.version) for name, r in content.items())
    version = versions_hash(after.items())
    fingerprint = versions_hash(
        [(n, r.version) for n, r in content.items()] + [(n, "-") for n in removed]
    )
    resources = [
        discovery_pb2.Resource(
            name=name, version=content[name].version, resource=content[name].as_any()
        )
        for name in sorted(content)
    ]
    removed_names = sorted(removed)

    def make(nonce: str) -> discovery_pb2.DeltaDiscoveryResponse:
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            resources=resources,
            type_url=type_url,
            removed_resources=removed_names,
            nonce=nonce,
        )

    return Draft(
        version=version,
        fingerprint=fingerprint,
        content=content,
        removed=frozenset(removed),
        make=make,
        full=False,
    )

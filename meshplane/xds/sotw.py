"""State-of-the-world ADS (``StreamAggregatedResources``): requests in, responses out.

Request handling, per ``type_url``:

- A request whose ``response_nonce`` is not the last nonce sent for its type is stale and
  ignored entirely.
- A request answering the in-flight response is its ACK, or its NACK when it carries
  ``error_detail`` (``version_info`` is then the last *accepted* version, so it is not used).
- Any other request (fresh, or current nonce but nothing in flight) that does not drop names
  is the client asking again: it is answered with the current state even if unchanged.
- ``resource_names`` replaces the subscription: empty means wildcard until the client has ever
  named resources ("legacy wildcard"), ``*`` means wildcard.  Names the client dropped are
  forgotten.
- The first request for a type that carries a ``version_info`` (Envoy reconnecting) is matched
  against the snapshot: if the content hash is equal, the client already has everything and
  nothing is sent; otherwise the client's state is *unknown* and planned ungated.

Responses carry the full content of the type (all subscribed names for EDS/RDS/SDS), a version
that is the hash of that content, and a fresh nonce.  Nothing is sent when the content equals
what the client has acked, except the first answer to a wildcard request (so Envoy finishes its
initial fetch even with no listeners).

Called by :mod:`meshplane.xds.server`.
"""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from meshplane.xds import types
from meshplane.xds.resource import Resource
from meshplane.xds.snapshot import Snapshot, content_version
from meshplane.xds.stream import Draft, Stream, TypeState


def handle(
    stream: Stream, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot | None
) -> None:
    """Apply one request to the stream's state."""
    type_url = request.type_url
    state = stream.state(type_url)
    nonce = request.response_nonce
    if stream.is_stale(state, nonce):
        return
    answers = state.pending is not None and state.pending.nonce == nonce
    if answers:
        error = request.error_detail.message if request.HasField("error_detail") else None
        if request.HasField("error_detail") and not error:
            error = f"rejected (gRPC status {request.error_detail.code}, no message)"
        stream.settle(type_url, nonce, error)
    first = not state.requested
    state.requested = True
    before = set(state.names)
    _subscribe(state, list(request.resource_names))
    if first and not nonce and request.version_info:
        _match_reconnect(type_url, state, request.version_info, snapshot)
    elif not answers and not first and before <= state.names:
        # Not an ACK/NACK and nothing dropped: the client asks again (e.g. an updated cluster
        # re-watching its endpoints).  Answer with the current state, even if unchanged.
        state.answered = False
        state.force.update(state.names & state.acked.keys())


def is_quiet_ack(
    stream: Stream, request: discovery_pb2.DiscoveryRequest, snapshot: Snapshot | None
) -> bool:
    """``request`` only ACKs the response in flight (no error, the same subscription) and
    that ACK leaves nothing to send (:meth:`Stream.settles_quietly`): :func:`handle` would only
    settle it."""
    type_url = request.type_url
    if request.HasField("error_detail") or not stream.settles_quietly(
        snapshot, type_url, request.response_nonce
    ):
        return False
    state = stream.types[type_url]
    names = set(request.resource_names)
    if names and not state.ever_named:
        return False
    wildcard = "*" in names or (not names and not state.ever_named)
    names.discard("*")
    return wildcard == state.wildcard and names == state.names


def _subscribe(state: TypeState, names: list[str]) -> None:
    if names:
        state.ever_named = True
    wanted = set(names)
    state.wildcard = "*" in wanted or (not wanted and not state.ever_named)
    wanted.discard("*")
    state.names = wanted
    if not state.wildcard:
        for name in [n for n in state.acked if n not in wanted]:
            del state.acked[name]
            state.held.pop(name, None)


def _match_reconnect(
    type_url: str, state: TypeState, version: str, snapshot: Snapshot | None
) -> None:
    if snapshot is not None:
        current = snapshot.get(type_url)
        content = {n: current[n] for n in state.subscribed(current) if n in current}
        if content_version(content.values()) == version:
            state.acked = {n: r.version for n, r in content.items()}
            state.held = dict(content)
            state.acked_version = state.sent_version = version
            state.answered = True
            return
    state.unknown = True


_BODIES: dict[tuple[str, str], bytes] = {}
_MAX_BODIES = 4096


def _response_body(type_url: str, version: str, content: dict[str, Resource]) -> bytes:
    """The serialized response without its nonce, made once per (type, content): the version
    is a hash of the names and versions of the content, and thousands of proxies with the same
    update get the same bytes (the nonce is appended: a protobuf field may follow the others)."""
    key = (type_url, version)
    body = _BODIES.get(key)
    if body is None:
        if len(_BODIES) >= _MAX_BODIES:
            _BODIES.clear()
        body = _BODIES[key] = discovery_pb2.DiscoveryResponse(
            version_info=version,
            resources=[content[name].as_any() for name in sorted(content)],
            type_url=type_url,
        ).SerializeToString()
    return body


def _nonce_field(nonce: str) -> bytes:
    """``DiscoveryResponse.nonce`` (field 5, length-delimited) as protobuf bytes."""
    data = nonce.encode()
    size = len(data)
    out = bytearray(b"\x2a")
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + data


def build(
    type_url: str, state: TypeState, desired: dict[str, Resource | None], snapshot: Snapshot
) -> Draft | None:
    """The response to send for ``type_url``, or None when the client is up to date."""
    content: dict[str, Resource] = {}
    for name, resource in desired.items():
        chosen = resource if resource is not None else state.held.get(name)
        if chosen is not None:
            content[name] = chosen
    if type_url in types.FULL_STATE or state.wildcard:
        changed = {n: r.version for n, r in content.items()} != state.acked
    else:
        changed = any(state.acked.get(n) != r.version for n, r in content.items())
    changed = changed or bool(state.force & content.keys())
    must_answer = not state.answered and (
        bool(content) or state.wildcard or type_url in types.FULL_STATE
    )
    if not changed and not must_answer:
        return None
    version = content_version(content.values())
    body = _response_body(type_url, version, content)

    def make(nonce: str) -> bytes:
        return body + _nonce_field(nonce)

    return Draft(
        version=version,
        fingerprint=version,
        content=content,
        removed=frozenset(),
        make=make,
        full=True,
    )

"""What the mesh DNS server answers, and why: a pure function of the store's contents.

``Answers.resolve(name, rdtype)`` decides for one question:

- a virtual service name (``awsName``, the virtual service's name) -> its VIP (A), an empty
  NOERROR answer for AAAA (no IPv6 VIPs: never NXDOMAIN for a name that has an A record);
- ``<service>.<namespace>`` of a Cloud Map DNS namespace -> A/AAAA/SRV/CNAME of its healthy
  instances (all of them when none is healthy: failing open, as Route 53 does), with the
  service's TTL and routing policy (MULTIVALUE: up to eight records; WEIGHTED: one instance at
  random), and ``<instance>.<service>.<namespace>`` -> that instance's address (the SRV
  targets); unknown names inside such a namespace -> NXDOMAIN;
- anything else -> not ours (the server forwards it, or refuses).

The index of names is rebuilt when the store's revision moves; instances are read per
question (an indexed page).  Used by :mod:`meshplane.nameserver.server` and by the API's
``dns lookup`` endpoint.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshplane.store import registry
from meshplane.store.protocols import ResourceStore
from meshplane.store.records import Record

VIP_TTL = 30
MULTIVALUE_MAX = 8
ZONE_TTL = 15


@dataclass(frozen=True, slots=True)
class Answer:
    """One question's outcome: ``rcode`` (NOERROR, NXDOMAIN, or FORWARD when the name is not
    the mesh's), the records (type, TTL, text), additional records, and the reason."""

    rcode: str
    records: tuple[tuple[str, int, str], ...] = ()
    additional: tuple[tuple[str, str, int, str], ...] = ()
    zone: str = ""
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "rcode": self.rcode,
            "answers": [{"type": t, "ttl": ttl, "data": d} for t, ttl, d in self.records],
            "additional": [
                {"name": n, "type": t, "ttl": ttl, "data": d} for n, t, ttl, d in self.additional
            ],
            "zone": self.zone,
            "reason": self.reason,
        }


@dataclass(slots=True)
class _Index:
    revision: int = -1
    vips: dict[str, tuple[list[str], str]] = field(default_factory=dict)  # name -> (meshes, ip)
    zones: dict[str, Record] = field(default_factory=dict)  # DNS namespace name -> record
    services: dict[tuple[str, str], Record] = field(default_factory=dict)  # (ns id, name)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


class Answers:
    """The mesh's DNS names over one store."""

    def __init__(self, store: ResourceStore, *, rng: random.Random | None = None) -> None:
        self.store = store
        self._index = _Index()
        self._rng = rng or random.Random()

    def _current(self) -> _Index:
        revision = self.store.revision
        if self._index.revision == revision:
            return self._index
        index = _Index(revision)
        for (mesh, service), ip in sorted(registry.vips(self.store).items()):
            meshes, first = index.vips.setdefault(_norm(service), ([], ip))
            if ip == first:  # one address in every mesh (meshplane.service.vips)
                meshes.append(mesh)
        for namespace in registry.namespaces(self.store):
            if namespace.spec.get("Type") in ("DNS_PRIVATE", "DNS_PUBLIC"):
                index.zones[_norm(str(namespace.spec["Name"]))] = namespace
        for record in registry.services(self.store):
            index.services[(record.key.parent, _norm(str(record.spec["Name"])))] = record
        self._index = index
        return index

    def zones(self) -> list[str]:
        """The Cloud Map DNS namespaces served (for the CoreDNS stanza the CLI prints)."""
        return sorted(self._current().zones)

    def resolve(self, name: str, rdtype: str) -> Answer:
        index = self._current()
        qname = _norm(name)
        found = index.vips.get(qname)
        if found is not None:
            meshes, ip = found
            of = f"mesh {meshes[0]}" if len(meshes) == 1 else f"meshes {', '.join(meshes)}"
            why = f"virtual service {qname} of {of}: its VIP"
            if rdtype in ("A", "ANY"):
                return Answer("NOERROR", (("A", VIP_TTL, ip),), zone=qname, reason=why)
            return Answer("NOERROR", zone=qname, reason=f"{why} is IPv4 only: no {rdtype} record")
        zone = self._zone_of(index, qname)
        if zone is None:
            return Answer(
                "FORWARD",
                reason=f"{qname} is neither a virtual service nor in a Cloud Map DNS namespace",
            )
        zone_name, namespace = zone
        return self._cloud_map(index, qname, zone_name, namespace, rdtype)

    @staticmethod
    def _zone_of(index: _Index, qname: str) -> tuple[str, Record] | None:
        labels = qname.split(".")
        for start in range(len(labels)):
            suffix = ".".join(labels[start:])
            if suffix in index.zones:
                return suffix, index.zones[suffix]
        return None

    def _cloud_map(
        self, index: _Index, qname: str, zone: str, namespace: Record, rdtype: str
    ) -> Answer:
        if qname == zone:
            return Answer("NOERROR", zone=zone, reason=f"the Cloud Map namespace {zone} itself")
        relative = qname[: -len(zone) - 1]
        service = index.services.get((namespace.key.name, relative))
        instance_id = None
        if service is None and "." in relative:
            instance_id, _, rest = relative.partition(".")
            service = index.services.get((namespace.key.name, rest))
        if service is None:
            return Answer(
                "NXDOMAIN",
                zone=zone,
                reason=f"no service {relative!r} in Cloud Map namespace {zone}",
            )
        dns_config = service.spec.get("DnsConfig") or {}
        ttls = {r["Type"]: int(r["TTL"]) for r in dns_config.get("DnsRecords", [])}
        where = f"Cloud Map service {service.spec['Name']} in namespace {zone}"
        instances = registry.instances(self.store, service)
        if instance_id is not None:
            chosen = [i for i in instances if i.id.lower() == instance_id]
            if not chosen:
                return Answer(
                    "NXDOMAIN", zone=zone, reason=f"no instance {instance_id!r} in {where}"
                )
            return self._addresses(chosen, rdtype, ttls, zone, f"instance {instance_id} of {where}")
        if not ttls:
            return Answer(
                "NOERROR", zone=zone, reason=f"{where} has no DNS records (an HTTP service)"
            )
        healthy = [i for i in instances if i.health != registry.UNHEALTHY]
        pool = healthy or instances
        note = "healthy instances" if healthy else "no healthy instance: every instance (fail open)"
        if dns_config.get("RoutingPolicy") == "WEIGHTED":
            pool = [self._rng.choice(pool)] if pool else []
            note += ", one at random (WEIGHTED)"
        else:
            pool = self._sample(pool, MULTIVALUE_MAX)
            note += ", up to eight (MULTIVALUE)"
        if rdtype == "SRV":
            if "SRV" not in ttls:
                return Answer("NOERROR", zone=zone, reason=f"{where} has no SRV records")
            records = []
            extra = []
            for i in pool:
                if i.port is None:
                    continue
                target = f"{i.id}.{service.spec['Name']}.{zone}."
                records.append(("SRV", ttls["SRV"], f"1 1 {i.port} {target}"))
                address = i.ipv4 or i.ipv6
                if address is not None:
                    kind = "A" if i.ipv4 else "AAAA"
                    extra.append((target, kind, ttls.get(kind, ttls["SRV"]), address))
            return Answer("NOERROR", tuple(records), tuple(extra), zone, f"{where}: {note}")
        return self._addresses(pool, rdtype, ttls, zone, f"{where}: {note}")

    @staticmethod
    def _addresses(
        pool: Sequence[registry.Instance],
        rdtype: str,
        ttls: Mapping[str, int],
        zone: str,
        why: str,
    ) -> Answer:
        kind = "A" if rdtype == "ANY" else rdtype
        if kind == "CNAME" or ("CNAME" in ttls and kind in ("A", "AAAA")):
            records = tuple(
                (
                    "CNAME",
                    ttls.get("CNAME", ZONE_TTL),
                    i.attributes["AWS_INSTANCE_CNAME"].rstrip(".") + ".",
                )
                for i in pool[:1]
                if "AWS_INSTANCE_CNAME" in i.attributes
            )
            return Answer("NOERROR", records, zone=zone, reason=why)
        if kind not in ("A", "AAAA"):
            return Answer("NOERROR", zone=zone, reason=f"{why}; no {rdtype} records")
        ttl = ttls.get(kind, ttls.get("SRV", ZONE_TTL))
        addresses = [i.ipv4 if kind == "A" else i.ipv6 for i in pool]
        records = tuple((kind, ttl, a) for a in addresses if a is not None)
        return Answer("NOERROR", records, zone=zone, reason=why)

    def _sample(self, pool: list[registry.Instance], count: int) -> list[registry.Instance]:
        return pool if len(pool) <= count else self._rng.sample(pool, count)

"""The mesh spec: egress filter and mesh-wide service discovery preferences.

``MeshSpec`` fills App Mesh's default egress filter (DROP_ALL) so Describe shows it.  Used by
``meshplane.model.specs`` and by the translation of egress (allow-all passthrough).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from meshplane.model.common import IpPreference, SpecModel

EgressFilterType = Literal["ALLOW_ALL", "DROP_ALL"]


class EgressFilter(SpecModel):
    type: EgressFilterType


class MeshServiceDiscovery(SpecModel):
    ipPreference: IpPreference | None = None


def _drop_all() -> EgressFilter:
    return EgressFilter(type="DROP_ALL")


class MeshSpec(SpecModel):
    """A mesh; ``egressFilter`` defaults to DROP_ALL."""

    egressFilter: EgressFilter = Field(default_factory=_drop_all)
    serviceDiscovery: MeshServiceDiscovery | None = None

    @field_validator("egressFilter", mode="before")
    @classmethod
    def _null_egress_is_default(cls, value: object) -> object:
        return _drop_all() if value is None else value

"""Virtual service and virtual router specs.

``VirtualServiceSpec`` (an optional provider: a virtual node or a virtual router) and
``VirtualRouterSpec`` (its listeners, ports unique).  Used by ``meshplane.model.specs``
and by the translation of backends.
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from meshplane.model.common import PortMapping, Problems, ResourceName, SpecModel, UnionModel
from meshplane.model.virtual_node import check_unique_ports


class VirtualNodeServiceProvider(SpecModel):
    virtualNodeName: ResourceName


class VirtualRouterServiceProvider(SpecModel):
    virtualRouterName: ResourceName


class VirtualServiceProvider(UnionModel):
    virtualNode: VirtualNodeServiceProvider | None = None
    virtualRouter: VirtualRouterServiceProvider | None = None


class VirtualServiceSpec(SpecModel):
    provider: VirtualServiceProvider | None = None


class VirtualRouterListener(SpecModel):
    portMapping: PortMapping


class VirtualRouterSpec(SpecModel):
    listeners: tuple[VirtualRouterListener, ...] | None = None

    @model_validator(mode="after")
    def _unique_ports(self) -> Self:
        problems = Problems()
        check_unique_ports(problems, [lst.portMapping.port for lst in self.listeners or ()])
        problems.raise_if_any()
        return self

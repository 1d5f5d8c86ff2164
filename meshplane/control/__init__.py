"""The control loop: from the store's change feed to per-proxy xDS snapshots."""

from meshplane.control.loop import ControlLoop

__all__ = ["ControlLoop"]

"""The control loop: from the store's change feed to per-proxy xDS snapshots."""

from meshplane.control.loop import ControlLoop, wrap_resources

__all__ = ["ControlLoop", "wrap_resources"]

"""The running control plane: settings and the wiring of every component."""

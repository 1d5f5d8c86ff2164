"""The App Mesh REST API and meshplane's own HTTP endpoints (ASGI)."""

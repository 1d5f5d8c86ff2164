"""The SQL schema of the store and its prepared statements.

Used by ``meshplane.store.sql``; portable SQLAlchemy Core (SQLite and PostgreSQL).  Two feeds:
``changes`` (one row per changed resource, by revision: what the control loop follows) and
``state_changes`` (one row per write to the other tables a replica keeps in memory: API
tokens, manifests, namespaces, sealed identity state), so that every replica sharing the
database follows every write.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

resources = sa.Table(
    "resources",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("mesh", sa.String(255), primary_key=True),
    sa.Column("parent", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("uid", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("mesh_owner", sa.String(12), nullable=False),
    sa.Column("resource_owner", sa.String(12), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("mesh", sa.String(255), nullable=False),
    sa.Column("parent", sa.String(255), nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

state_changes = sa.Table(
    "state_changes",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("what", sa.String(32), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

client_tokens = sa.Table(
    "client_tokens",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(128), nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

namespaces = sa.Table(
    "namespaces",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("labels", sa.Text, nullable=False),
)

manifests = sa.Table(
    "manifests",
    metadata,
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("namespace", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("mesh", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("sealed_secret", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(255), nullable=False),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(600), primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

proxies = sa.Table(
    "proxies",
    metadata,
    sa.Column("replica", sa.String(255), primary_key=True),
    sa.Column("stream", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("mesh", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
"""The fleet's connected proxies (``meshplane.store.presence``): written when a proxy's status
changes (``heartbeat_at``: when), alive while its replica's heartbeat is fresh."""

replicas = sa.Table(
    "replicas",
    metadata,
    sa.Column("replica", sa.String(255), primary_key=True),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
"""One heartbeat row per running replica of a fleet (``meshplane.store.presence``)."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("principal", sa.String(255), nullable=False),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("mesh", sa.String(255), nullable=False, index=True),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("via", sa.String(16), nullable=False),
)

_KEY = sa.and_(
    resources.c.kind == sa.bindparam("k_kind"),
    resources.c.mesh == sa.bindparam("k_mesh"),
    resources.c.parent == sa.bindparam("k_parent"),
    resources.c.name == sa.bindparam("k_name"),
)

INSERT_RESOURCE = resources.insert()
UPDATE_RESOURCE = (
    resources.update()
    .where(_KEY)
    .values(
        spec=sa.bindparam("p_spec"),
        version=sa.bindparam("p_version"),
        updated_at=sa.bindparam("p_updated_at"),
        revision=sa.bindparam("p_revision"),
        tags=sa.bindparam("p_tags"),
    )
)
DELETE_RESOURCE = resources.delete().where(_KEY)
INSERT_CHANGE = changes.insert()
INSERT_STATE_CHANGE = state_changes.insert()
SELECT_TOKEN = sa.select(
    client_tokens.c.fingerprint, client_tokens.c.answer, client_tokens.c.created_at
).where(client_tokens.c.token == sa.bindparam("token"))
INSERT_TOKEN = client_tokens.insert()
DELETE_TOKEN = client_tokens.delete().where(client_tokens.c.token == sa.bindparam("token"))
INSERT_NAMESPACE = namespaces.insert()
DELETE_NAMESPACE = namespaces.delete().where(namespaces.c.name == sa.bindparam("name"))
INSERT_MANIFEST = manifests.insert()
DELETE_MANIFEST = manifests.delete().where(
    manifests.c.kind == sa.bindparam("kind"),
    manifests.c.namespace == sa.bindparam("namespace"),
    manifests.c.name == sa.bindparam("name"),
)
INSERT_API_TOKEN = api_tokens.insert()
DELETE_API_TOKEN = api_tokens.delete().where(api_tokens.c.id == sa.bindparam("id"))
INSERT_AUDIT = audit_log.insert()
INSERT_SECRET = secrets.insert()
DELETE_SECRET = secrets.delete().where(secrets.c.name == sa.bindparam("name"))

"""Several replicas on one database: the state feed (API tokens, manifests, namespaces, sealed
identity state), the sealed identity state itself, and an index that lets a replica catch up
with the resources changed since a revision.  Additive: a replica of the previous release
keeps working on the upgraded schema until it is replaced.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("what", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(600), primary_key=True),
        sa.Column("sealed", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_resources_revision", "resources", ["revision"])


def downgrade() -> None:
    op.drop_index("ix_resources_revision", "resources")
    op.drop_table("secrets")
    op.drop_table("state_changes")

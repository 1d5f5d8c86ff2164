"""One heartbeat row per replica: a replica writes its proxies' rows only when they change
(connect, disconnect, ACK/NACK), and their liveness follows from their replica's heartbeat.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("replica", sa.String(255), primary_key=True),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replicas")

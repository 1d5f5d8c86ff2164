"""The proxies connected to each replica, with a heartbeat, so that ``proxy-status`` through
any replica shows the whole fleet.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proxies",
        sa.Column("replica", sa.String(255), primary_key=True),
        sa.Column("stream", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("mesh", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("proxies")

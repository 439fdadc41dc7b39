"""Metering: the usage ledger (tokens, GPU intervals), prices and credits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "usage_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("deployment_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_tokens_user_id_at", "usage_tokens", ["user_id", "at"])
    op.create_table(
        "usage_gpu_intervals",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("gpu_type", sa.String(100), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("price_micros_per_hour", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
    )
    op.create_index("ix_usage_gpu_intervals_owner_id", "usage_gpu_intervals", ["owner_id"])
    op.create_table(
        "prices",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("price_micros", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "credits",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(40),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_credits_user_id"),
            nullable=False,
        ),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
        sa.Column("actor_user_id", sa.String(40), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_credits_user_id", "credits", ["user_id"])


def downgrade() -> None:
    op.drop_table("credits")
    op.drop_table("prices")
    op.drop_table("usage_gpu_intervals")
    op.drop_table("usage_tokens")

"""Deployments: a served model holding GPU slots of the ledger while it lives."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), index=True),
        sa.Column("client_request_id", sa.String(128), nullable=True),
        sa.Column("spec", sa.JSON()),
        sa.Column("public", sa.Boolean()),
        sa.Column("status", sa.String(16), index=True),
        sa.Column("status_reason", sa.Text()),
        sa.Column("gpu_type", sa.String(64)),
        sa.Column("node_ids", sa.JSON()),
        sa.Column("endpoint", sa.Text()),
        sa.Column("ready_replicas", sa.Integer()),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("owner_id", "client_request_id", name="uq_deployments_request"),
    )


def downgrade() -> None:
    op.drop_table("deployments")

"""The scheduler's first tables: jobs, placements, nodes, quotas, outbox."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), index=True),
        sa.Column("client_request_id", sa.String(128), nullable=True),
        sa.Column("spec", sa.JSON()),
        sa.Column("priority", sa.Integer()),
        sa.Column("status", sa.String(16), index=True),
        sa.Column("status_reason", sa.Text()),
        sa.Column("attempt", sa.Integer()),
        sa.Column("lease_id", sa.String(40)),
        sa.Column("node_ids", sa.JSON()),
        sa.Column("progress", sa.Float()),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("owner_id", "client_request_id", name="uq_jobs_request"),
    )
    op.create_table(
        "placements",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("attempt", sa.Integer(), primary_key=True),
        sa.Column("node_rank", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.String(128), index=True),
        sa.Column("gpu_type", sa.String(64)),
        sa.Column("slots", sa.Integer()),
        sa.Column("phase", sa.String(16)),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text()),
        sa.Column("master_port", sa.Integer()),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("address", sa.String(255)),
        sa.Column("inventory", sa.JSON()),
        sa.Column("container_runtime", sa.String(16)),
        sa.Column("last_seen", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "quotas",
        sa.Column("owner_id", sa.String(64), primary_key=True),
        sa.Column("gpu_type", sa.String(64), primary_key=True),
        sa.Column("max_gpus", sa.Integer()),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("envelope", sa.LargeBinary()),
        sa.Column("traceparent", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    for table in ("outbox", "quotas", "nodes", "placements", "jobs"):
        op.drop_table(table)

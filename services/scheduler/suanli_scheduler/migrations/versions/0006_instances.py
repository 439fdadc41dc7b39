"""Instances (a user's JupyterLab, LLaMA-Factory or TensorBoard, run as jobs), the endpoint an
instance's run reports, and the CPU, memory and instance kinds nodes declare."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(64), index=True),
        sa.Column("name", sa.String(200)),
        sa.Column("active_name", sa.String(200), nullable=True),
        sa.Column("spec", sa.JSON()),
        sa.Column("token", sa.String(128)),
        sa.Column("desired", sa.String(16)),
        sa.Column("job_id", sa.String(40)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("owner_id", "active_name", name="uq_instances_name"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("endpoint", sa.String(255), nullable=False, server_default=""))
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("cpu_millis", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("memory_mb", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("unavailable_kinds", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("unavailable_kinds")
        batch.drop_column("memory_mb")
        batch.drop_column("cpu_millis")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("endpoint")
    op.drop_table("instances")

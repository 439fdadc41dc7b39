"""Job results: rank 0's <output>/result.json on a succeeded job, and each placement's until the
whole gang has succeeded."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_json", sa.Text(), nullable=True))
    with op.batch_alter_table("placements") as batch:
        batch.add_column(sa.Column("result_json", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("placements") as batch:
        batch.drop_column("result_json")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_json")

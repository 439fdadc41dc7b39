"""Model ids up to 255 characters: a fine-tune's id (`ft:<base>:<suffix>:<job id>`, its adapter's
with `:adapter`) embeds its base model's id, which may itself be up to 128 characters.

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


def upgrade() -> None:
    with op.batch_alter_table("catalog_models") as batch:
        for column in ("id", "base_model_id"):
            batch.alter_column(column, existing_type=sa.String(128), type_=sa.String(255), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("catalog_models") as batch:
        for column in ("id", "base_model_id"):
            batch.alter_column(column, existing_type=sa.String(255), type_=sa.String(128), existing_nullable=False)

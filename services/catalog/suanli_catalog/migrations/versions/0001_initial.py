"""The catalog tables: models, files, outbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "catalog_models",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("owner_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("architecture", sa.String(128), nullable=False),
        sa.Column("parameter_count", sa.BigInteger, nullable=False),
        sa.Column("context_length", sa.BigInteger, nullable=False),
        sa.Column("chat_template", sa.Text, nullable=False),
        sa.Column("base_model_id", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_catalog_models_owner_id", "catalog_models", ["owner_id"])
    op.create_table(
        "catalog_files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner_id", sa.String(40), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("storage_key", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_details", sa.Text, nullable=False),
        sa.Column("dataset_format", sa.String(32), nullable=False),
        sa.Column("examples", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("tokenizer", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_catalog_files_owner_id", "catalog_files", ["owner_id"])
    op.create_table(
        "catalog_outbox",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("traceparent", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_catalog_outbox_created_at", "catalog_outbox", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_catalog_outbox_created_at", "catalog_outbox")
    op.drop_table("catalog_outbox")
    op.drop_index("ix_catalog_files_owner_id", "catalog_files")
    op.drop_table("catalog_files")
    op.drop_index("ix_catalog_models_owner_id", "catalog_models")
    op.drop_table("catalog_models")

"""Alembic environment of the rag service: runs on the connection `Database.migrate` gives."""

from suanli_common.db import run_migrations_online
from suanli_rag.models import RagBase

run_migrations_online(RagBase.metadata)

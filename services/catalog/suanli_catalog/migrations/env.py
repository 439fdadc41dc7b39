"""Alembic environment of the catalog service: runs on the connection `Database.migrate` gives."""

from suanli_catalog.models import CatalogBase
from suanli_common.db import run_migrations_online

run_migrations_online(CatalogBase.metadata)

"""Alembic environment of the auth service: runs on the connection `Database.migrate` gives."""

from suanli_auth.models import AuthBase
from suanli_common.db import run_migrations_online

run_migrations_online(AuthBase.metadata)

"""What a user stores now, from the catalog: their files and the models they own. A figure beside
the metered usage, so a catalog that cannot answer leaves it unknown (None) rather than failing
the report; and the `storage_bytes` quota, checked before an upload is taken."""

from __future__ import annotations

import asyncio

from suanli_common.errors import PermissionDenied, SuanliError
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.auth import AuthApi
from suanli_inference_gateway.clients.catalog import CatalogApi

STORAGE_BYTES = "storage_bytes"

log = get_logger(__name__)


async def stored_bytes(catalog: CatalogApi, user_id: str) -> int | None:
    try:
        files, models = await asyncio.gather(catalog.list_files(user_id), catalog.list_models(user_id))
    except SuanliError as exc:
        log.warning("cannot read the stored bytes from the catalog", user_id=user_id, error=exc.message)
        return None
    # list_models also shows the public models others own: only the user's own count.
    return sum(f.bytes for f in files) + sum(m.size_bytes for m in models if m.owner_id == user_id)


class StorageQuotaExceeded(PermissionDenied):
    """403 (as storage services answer a full quota: waiting does not help) of type `insufficient_quota`."""

    error_type = "insufficient_quota"


async def require_storage_room(auth: AuthApi, catalog: CatalogApi, user_id: str, incoming: int) -> None:
    """Refuses an upload that would take the user over their `storage_bytes` quota. A quota below
    what is stored already stops new uploads only; when auth or the catalog cannot say, the upload
    goes through (like the token quota, the check must not take uploads down)."""
    try:
        statuses = await auth.get_quota_status(user_id)
    except SuanliError as exc:
        log.warning("cannot read the storage quota from auth", user_id=user_id, error=exc.message)
        return
    quota = next((s for s in statuses if s.resource == STORAGE_BYTES), None)
    if quota is None:
        return
    stored = await stored_bytes(catalog, user_id)
    if stored is not None and stored + incoming > quota.limit:
        raise StorageQuotaExceeded(
            f"storage quota reached: {stored} of {quota.limit} bytes stored, and this file has {incoming}; "
            "delete files or ask an admin for more",
            param=STORAGE_BYTES,
            code="quota_exceeded",
        )

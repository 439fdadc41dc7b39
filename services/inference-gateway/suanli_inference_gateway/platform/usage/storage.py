"""What a user stores now, from the catalog: their files and the models they own. A figure beside
the metered usage, so a catalog that cannot answer leaves it unknown (None) rather than failing
the report."""

from __future__ import annotations

import asyncio

from suanli_common.errors import SuanliError
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.catalog import CatalogApi

log = get_logger(__name__)


async def stored_bytes(catalog: CatalogApi, user_id: str) -> int | None:
    try:
        files, models = await asyncio.gather(catalog.list_files(user_id), catalog.list_models(user_id))
    except SuanliError as exc:
        log.warning("cannot read the stored bytes from the catalog", user_id=user_id, error=exc.message)
        return None
    # list_models also shows the public models others own: only the user's own count.
    return sum(f.bytes for f in files) + sum(m.size_bytes for m in models if m.owner_id == user_id)

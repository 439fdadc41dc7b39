"""What only an admin may do is checked here, the same way for every such action."""

from __future__ import annotations

from suanli_auth.domain import Role
from suanli_auth.models import UserRow
from suanli_auth.repository import AuthRepository
from suanli_common.errors import PermissionDenied


async def require_admin(repo: AuthRepository, actor_user_id: str, action: str) -> UserRow:
    """The actor's row; PermissionDenied (code admin_required) unless the actor is an admin."""
    actor = await repo.get_user(actor_user_id) if actor_user_id else None
    if actor is None or actor.role != Role.admin:
        raise PermissionDenied(f"only an admin can {action}", code="admin_required")
    return actor

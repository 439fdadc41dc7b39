"""Resolves a bearer credential to a `Principal`.

Access tokens (JWTs) are verified here with auth's public keys, fetched once from
`GetSigningKeys` and fetched again when a token names a key id we have not seen (auth rotated
its key). API keys go to auth's `Authenticate` through the `ApiKeyCache`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import jwt

from suanli_common.errors import Unauthenticated
from suanli_common.tokens import TokenVerifier, looks_like_jwt
from suanli_inference_gateway.authentication.key_cache import ApiKeyCache
from suanli_inference_gateway.clients.auth import AuthApi, Principal

# A token naming an unknown kid makes us ask auth again at most this often: otherwise a
# client sending made-up kids would turn every request into a call to auth.
KEY_REFRESH_MIN_INTERVAL_S = 5.0


class Authenticator:
    def __init__(
        self,
        auth: AuthApi,
        key_cache: ApiKeyCache,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._keys = key_cache
        self._clock = clock
        self._verifier: TokenVerifier | None = None
        self._kids: frozenset[str] = frozenset()
        self._refetched_at = float("-inf")
        self._fetch_lock = asyncio.Lock()

    @property
    def key_cache(self) -> ApiKeyCache:
        return self._keys

    async def authenticate(self, credential: str) -> Principal:
        if looks_like_jwt(credential):
            return await self._verify_token(credential)
        return await self._keys.resolve(credential, self._auth.authenticate)

    async def _verify_token(self, token: str) -> Principal:
        try:
            kid = str(jwt.get_unverified_header(token).get("kid", ""))
        except jwt.PyJWTError:
            raise Unauthenticated("invalid access token", code="invalid_token") from None
        verifier = self._verifier
        if verifier is None or kid not in self._kids:
            verifier = await self._refresh_keys(kid)
        claims = verifier.verify(token)
        return Principal(user_id=claims.user_id, email=claims.email, role=claims.role, key_id=None)

    async def _refresh_keys(self, kid: str) -> TokenVerifier:
        async with self._fetch_lock:
            verifier = self._verifier
            if verifier is not None:
                # Another request may have fetched while this one waited for the lock; and an
                # unknown kid earns one refetch per interval, not one per request.
                if kid in self._kids or self._clock() - self._refetched_at < KEY_REFRESH_MIN_INTERVAL_S:
                    return verifier
                self._refetched_at = self._clock()
            keys = await self._auth.get_signing_keys()
            self._verifier = TokenVerifier(keys.public_keys_pem, keys.issuer)
            self._kids = frozenset(keys.public_keys_pem)
            return self._verifier

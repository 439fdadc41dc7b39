"""Verification of Suanli access tokens (EdDSA-signed JWTs issued by the auth service).

Tokens are signed with auth's private key; every other service verifies them with the public
key alone (fetched once from auth's `GetSigningKeys`), so a request with a token needs no call
to auth at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from suanli_common.errors import Unauthenticated

ALGORITHM = "EdDSA"


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    user_id: str
    email: str
    role: str
    expires_at: int
    token_id: str


class TokenVerifier:
    def __init__(self, public_keys_pem: dict[str, str], issuer: str) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for kid, pem in public_keys_pem.items():
            key = load_pem_public_key(pem.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"signing key {kid} is not an Ed25519 key")
            self._keys[kid] = key
        self._issuer = issuer

    def verify(self, token: str) -> AccessTokenClaims:
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            key = self._keys.get(kid)
            if key is None:
                raise Unauthenticated("access token signed by an unknown key", code="invalid_token")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": ["sub", "exp", "iat", "iss", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("access token expired", code="token_expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("invalid access token", code="invalid_token") from None
        return AccessTokenClaims(
            user_id=claims["sub"],
            email=claims.get("email", ""),
            role=claims.get("role", "user"),
            expires_at=int(claims["exp"]),
            token_id=claims["jti"],
        )


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and not credential.startswith("sk-")

"""The service's secrets on disk and the tokens it signs: an Ed25519 key for access tokens
(verified elsewhere with `suanli_common.tokens.TokenVerifier`) and an HMAC key for sign-in codes.

Both are created on first start with mode 0600 and reused afterwards, so tokens and pending
codes survive a restart. In production, point the paths at mounted secrets shared by replicas.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from datetime import datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from suanli_auth.domain import AccessToken, PublicSigningKey, User
from suanli_common.ids import new_id
from suanli_common.tokens import ALGORITHM, TokenVerifier


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once must not overwrite each other's fresh key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            _write_private(path, pem)
    key = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            _write_private(path, secrets.token_bytes(size))
    data = path.read_bytes()
    if len(data) < 16:
        raise ValueError(f"{path} holds too short a secret")
    return data


class TokenSigner:
    """Issues access tokens: EdDSA JWTs with the key id in the header."""

    def __init__(self, key: Ed25519PrivateKey, issuer: str, ttl_s: int) -> None:
        self._key = key
        self.issuer = issuer
        self._ttl_s = ttl_s
        public = key.public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        # The kid is derived from the key itself, so it changes exactly when the key does.
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")
        self.public_key_pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    def issue(self, user: User, now: datetime) -> AccessToken:
        iat = int(now.timestamp())
        claims = {
            "sub": user.id,
            "email": user.email,
            "role": user.role.value,
            "iat": iat,
            "exp": int((now + timedelta(seconds=self._ttl_s)).timestamp()),
            "iss": self.issuer,
            "jti": new_id("tok"),
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return AccessToken(token=token, expires_in=self._ttl_s)

    def public_keys(self) -> list[PublicSigningKey]:
        return [PublicSigningKey(kid=self.kid, algorithm=ALGORITHM, public_key_pem=self.public_key_pem)]

    def verifier(self) -> TokenVerifier:
        return TokenVerifier({k.kid: k.public_key_pem for k in self.public_keys()}, self.issuer)

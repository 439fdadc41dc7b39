"""What survives a restart (signing key, HMAC key, data) and how settings read the environment."""

from __future__ import annotations

import stat

import pytest

from suanli_auth.main import running_auth
from suanli_auth.settings import AuthSettings
from suanli_common.grpc import make_channel
from suanli_common.proto.suanli.v1 import auth_pb2, auth_pb2_grpc
from suanli_common.tokens import TokenVerifier


async def test_keys_are_made_private_once_and_tokens_survive_a_restart(settings: AuthSettings) -> None:
    async with running_auth(settings) as auth:
        channel = make_channel(auth.address)
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        await stub.SignUp(auth_pb2.SignUpRequest(email="ada@example.com", password="correct horse"))
        login = await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="correct horse"))
        await channel.close()

    for path in (settings.resolved_signing_key_path, settings.resolved_email_code_secret_path):
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem_before = settings.resolved_signing_key_path.read_bytes()

    async with running_auth(settings) as auth:
        channel = make_channel(auth.address)
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        keys = await stub.GetSigningKeys(auth_pb2.GetSigningKeysRequest())
        principal = await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=login.access_token))
        # The account survived too: the same password still signs in.
        await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="correct horse"))
        await channel.close()

    assert settings.resolved_signing_key_path.read_bytes() == pem_before
    assert principal.user_id == login.user.id
    verifier = TokenVerifier({k.kid: k.public_key_pem for k in keys.keys}, keys.issuer)
    assert verifier.verify(login.access_token).user_id == login.user.id


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_AUTH_GRPC_PORT", "6000")
    monkeypatch.setenv("SUANLI_TOKEN_TTL_S", "60")
    monkeypatch.setenv("SUANLI_ADMIN_EMAILS", "Root@Example.com, ops@example.com")
    settings = AuthSettings()
    assert settings.auth_grpc_port == 6000
    assert settings.token_ttl_s == 60
    assert settings.admin_emails == ["root@example.com", "ops@example.com"]

    monkeypatch.setenv("SUANLI_ADMIN_EMAILS", '["a@example.com"]')
    assert AuthSettings().admin_emails == ["a@example.com"]

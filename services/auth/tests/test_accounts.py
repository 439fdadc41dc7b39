"""Sign-up, password and e-mail-code sign-in, tokens, through the real gRPC API."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import pytest

from suanli_auth.settings import AuthSettings
from suanli_common.errors import Conflict, InvalidRequest, NotFound, Unauthenticated
from suanli_common.proto.suanli.v1 import auth_pb2
from suanli_common.tokens import TokenVerifier

if TYPE_CHECKING:  # the async stub type exists only for type checkers
    from suanli_common.proto.suanli.v1.auth_pb2_grpc import AuthServiceAsyncStub as Stub


async def sign_up(
    stub: Stub, email: str = "Ada@Example.com", password: str = "correct horse"
) -> auth_pb2.User:
    return await stub.SignUp(auth_pb2.SignUpRequest(email=email, password=password))


async def test_sign_up_creates_a_user_and_rejects_a_duplicate(stub: Stub) -> None:
    user = await sign_up(stub)
    assert user.id.startswith("user_")
    assert user.email == "ada@example.com"  # stored lower-cased
    assert user.role == auth_pb2.ROLE_USER
    assert user.HasField("created_at")

    with pytest.raises(Conflict) as exc:
        await sign_up(stub, email="ADA@example.com")
    assert exc.value.code == "email_taken"
    assert exc.value.param == "email"
    assert exc.value.http_status == 409

    fetched = await stub.GetUser(auth_pb2.GetUserRequest(user_id=user.id))
    assert fetched.email == "ada@example.com"
    with pytest.raises(NotFound):
        await stub.GetUser(auth_pb2.GetUserRequest(user_id="user_missing"))


async def test_sign_up_validates_email_and_password(stub: Stub) -> None:
    with pytest.raises(InvalidRequest) as bad_email:
        await sign_up(stub, email="not-an-email")
    assert (bad_email.value.param, bad_email.value.code) == ("email", "invalid_email")

    with pytest.raises(InvalidRequest) as short:
        await sign_up(stub, password="short")
    assert (short.value.param, short.value.code) == ("password", "password_too_short")


async def test_admin_emails_get_the_admin_role_and_the_first_user_does_not(stub: Stub) -> None:
    first = await sign_up(stub, email="first@example.com")
    admin = await sign_up(stub, email="Boss@Example.com")
    assert first.role == auth_pb2.ROLE_USER
    assert admin.role == auth_pb2.ROLE_ADMIN


async def test_password_login_issues_a_token_that_verifies_with_the_published_keys(
    stub: Stub, settings: AuthSettings
) -> None:
    user = await sign_up(stub)
    response = await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="correct horse"))
    assert response.token_type == "bearer"
    assert response.expires_in == settings.token_ttl_s
    assert response.user.id == user.id

    keys = await stub.GetSigningKeys(auth_pb2.GetSigningKeysRequest())
    assert keys.issuer == "suanli"
    assert [k.algorithm for k in keys.keys] == ["EdDSA"]
    verifier = TokenVerifier({k.kid: k.public_key_pem for k in keys.keys}, keys.issuer)
    claims = verifier.verify(response.access_token)
    assert (claims.user_id, claims.email, claims.role) == (user.id, "ada@example.com", "user")

    principal = await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=response.access_token))
    assert principal.user_id == user.id
    assert principal.key_id == ""


async def test_wrong_password_and_unknown_email_answer_alike(stub: Stub) -> None:
    await sign_up(stub)
    with pytest.raises(Unauthenticated) as wrong:
        await stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="wrong password"))
    with pytest.raises(Unauthenticated) as unknown:
        await stub.Login(auth_pb2.LoginRequest(email="nobody@example.com", password="correct horse"))
    assert wrong.value.code == unknown.value.code == "invalid_credentials"
    assert wrong.value.message == unknown.value.message == "incorrect email or password"

    with pytest.raises(InvalidRequest):
        await stub.Login(auth_pb2.LoginRequest(email="ada@example.com"))


async def test_email_code_sign_in_creates_a_passwordless_account(
    stub: Stub,
    latest_mail: Callable[[], EmailMessage],
    mailed_code: Callable[[], str],
    settings: AuthSettings,
) -> None:
    response = await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="Grace@Example.com"))
    assert response.expires_in == settings.email_code_ttl_s
    mail = latest_mail()
    assert mail["Subject"] == "Your Suanli sign-in code"
    assert mail["To"] == "grace@example.com"

    login = await stub.Login(auth_pb2.LoginRequest(email="grace@example.com", code=mailed_code()))
    assert login.user.email == "grace@example.com"
    assert login.access_token

    # The account has no password: password sign-in must not let anyone in.
    with pytest.raises(Unauthenticated):
        await stub.Login(auth_pb2.LoginRequest(email="grace@example.com", password=""))

    # The next code signs in to the same account.
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="grace@example.com"))
    again = await stub.Login(auth_pb2.LoginRequest(email="grace@example.com", code=mailed_code()))
    assert again.user.id == login.user.id


async def test_a_code_works_once(stub: Stub, mailed_code: Callable[[], str]) -> None:
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="a@example.com"))
    code = mailed_code()
    await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=code))
    with pytest.raises(Unauthenticated) as reused:
        await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=code))
    assert reused.value.code == "code_used"


async def test_a_code_expires(stub: Stub, mailed_code: Callable[[], str], clock: Any) -> None:
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="a@example.com"))
    clock.advance(601)
    with pytest.raises(Unauthenticated) as expired:
        await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=mailed_code()))
    assert expired.value.code == "code_expired"


async def test_a_code_dies_after_too_many_wrong_guesses(stub: Stub, mailed_code: Callable[[], str]) -> None:
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="a@example.com"))
    code = mailed_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):  # settings.email_code_max_attempts
        with pytest.raises(Unauthenticated) as guess:
            await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=wrong))
        assert guess.value.code == "invalid_code"
    with pytest.raises(Unauthenticated) as dead:
        await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=code))
    assert dead.value.code == "code_attempts_exceeded"


async def test_a_new_code_replaces_the_previous_one(stub: Stub, mailed_code: Callable[[], str]) -> None:
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="a@example.com"))
    first = mailed_code()
    await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="a@example.com"))
    second = mailed_code()
    if first != second:  # one in a million they coincide
        with pytest.raises(Unauthenticated) as old:
            await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=first))
        assert old.value.code == "invalid_code"
    assert (await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code=second))).access_token


async def test_code_login_without_a_requested_code_fails(stub: Stub) -> None:
    with pytest.raises(Unauthenticated) as exc:
        await stub.Login(auth_pb2.LoginRequest(email="a@example.com", code="123456"))
    assert exc.value.code == "invalid_code"


async def test_requesting_a_code_needs_a_valid_email(stub: Stub) -> None:
    with pytest.raises(InvalidRequest) as exc:
        await stub.RequestEmailCode(auth_pb2.RequestEmailCodeRequest(email="nope"))
    assert exc.value.param == "email"


async def test_garbage_credentials_are_rejected(stub: Stub) -> None:
    for credential in ("", "hello", "a.b.c", "sk-unknown"):
        with pytest.raises(Unauthenticated):
            await stub.Authenticate(auth_pb2.AuthenticateRequest(credential=credential))

"""Settings of the auth service (`SUANLI_*` variables); the defaults are the embedded ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr, StringConstraints, field_validator
from pydantic_settings import NoDecode

from suanli_auth.domain import Price, PriceKind
from suanli_common.settings import ServiceSettings

PricedName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# In whole currency units; the bound is SetPrices' (metering.prices.MAX_PRICE_MICROS).
PriceUnits = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class AuthSettings(ServiceSettings):
    service_name: ClassVar[str] = "auth"

    auth_grpc_port: int = Field(50051, description="Port of the AuthService gRPC API")
    auth_grpc_host: str = Field("127.0.0.1", description="Interface the gRPC API binds to")
    auth_metrics_port: int = Field(
        9461, ge=0, description="Port of Prometheus /metrics, on the gRPC API's interface (0: off)"
    )
    token_ttl_s: int = Field(3600, gt=0, description="Lifetime of an access token in seconds")
    token_issuer: str = Field("suanli", description="`iss` claim of access tokens")
    email_code_ttl_s: int = Field(600, gt=0, description="Lifetime of an e-mailed sign-in code")
    email_code_max_attempts: int = Field(5, gt=0, description="Wrong guesses before a code is dead")
    password_min_length: int = Field(8, gt=0, description="Shortest accepted password")
    signing_key_path: Path | None = Field(
        None, description="Ed25519 private key (PEM); default: <home>/auth/signing_key.pem, made on start"
    )
    email_code_secret_path: Path | None = Field(
        None, description="HMAC key for sign-in codes; default: next to the signing key, made on start"
    )
    smtp_host: str | None = Field(
        None, description="SMTP server; unset: mails go to <home>/outbox as .eml files"
    )
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    smtp_timeout_s: float = 10.0
    mail_from: str = "Suanli <no-reply@suanli.local>"
    admin_emails: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accounts signing up with these e-mails are admins (comma-separated or JSON list)",
    )

    currency: str = Field(
        "USD", min_length=1, max_length=8, description="Currency of prices, charges and credits"
    )
    prices: dict[PriceKind, dict[PricedName, PriceUnits]] = Field(
        default_factory=dict,
        description=(
            "Prices seeded at start while the price table is empty (later changes are an admin's, "
            "through SetPrices), JSON in whole currency units: "
            '{"gpu_hour": {"A100-80G": 2.5, "*": 1.0}, "input_tokens": {"*": 0.2}, '
            '"output_tokens": {"*": 0.6}}; gpu_hour is per GPU-hour of a GPU type, input_tokens '
            'and output_tokens per million tokens of a model; "*" prices every name not listed'
        ),
    )

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
        if isinstance(value, list):
            return [str(v).strip().lower() for v in value if str(v).strip()]
        return value

    def seed_prices(self) -> list[Price]:
        """`prices` in micros."""
        return [
            Price(kind, name, round(price * 1_000_000))
            for kind, by_name in self.prices.items()
            for name, price in by_name.items()
        ]

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.service_home / "signing_key.pem"

    @property
    def resolved_email_code_secret_path(self) -> Path:
        return self.email_code_secret_path or self.resolved_signing_key_path.parent / "email_code_secret"

    @property
    def mail_outbox_dir(self) -> Path:
        # Shared by the platform (not under home/auth) so the launcher can point developers at it.
        return self.home.resolve() / "outbox"

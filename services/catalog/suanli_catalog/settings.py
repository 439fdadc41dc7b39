"""Settings of the catalog service (`SUANLI_*` variables); the defaults are the embedded ones."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from suanli_common.settings import ServiceSettings


class CatalogSettings(ServiceSettings):
    service_name: ClassVar[str] = "catalog"

    catalog_grpc_port: int = Field(50052, description="Port of the CatalogService gRPC API")
    catalog_grpc_host: str = Field("127.0.0.1", description="Interface the gRPC API binds to")
    catalog_metrics_port: int = Field(
        9462, ge=0, description="Port of Prometheus /metrics, on the gRPC API's interface (0: off)"
    )
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Largest accepted file upload")
    seed_models: bool = Field(
        True, description="Build the tiny test model and convert SmolLM2 on first start"
    )
    artifacts_dir: Path | None = Field(
        None, description="Local artifact store; default: <home>/catalog/artifacts (unused with S3)"
    )
    models_dir: Path | None = Field(
        None, description="Where seed models are built; default: <home>/catalog/models"
    )
    artifact_url_ttl_s: int = Field(
        24 * 3600,
        gt=0,
        le=7 * 24 * 3600,  # the longest a SigV4 presigned URL may live
        description="How long an artifact URL (GetArtifactUrl) stays valid; a job reads its "
        "inputs through one when it is placed, which may be long after it was submitted",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO: http://minio:9000); set to use S3 for artifacts"
    )
    s3_bucket: str = Field("suanli-artifacts", description="Bucket of the artifacts")
    s3_region: str = Field("us-east-1", description="Region name given to the S3 client")
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = Field("", description="Key prefix inside the bucket")

    @property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.service_home / "artifacts"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.service_home / "models"

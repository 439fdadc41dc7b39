"""The one error model: domain exceptions that map to OpenAI error objects and gRPC statuses.

Services raise these; the gRPC layer carries them across processes (status code plus
`suanli-error-*` trailing metadata) and the gateway renders them as
`{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc


class SuanliError(Exception):
    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def to_openai(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(SuanliError):
    http_status = 400
    error_type = "invalid_request_error"
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class Unauthenticated(SuanliError):
    http_status = 401
    error_type = "authentication_error"
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SuanliError):
    http_status = 403
    error_type = "permission_error"
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(SuanliError):
    http_status = 404
    error_type = "not_found_error"
    grpc_code = grpc.StatusCode.NOT_FOUND


class Conflict(SuanliError):
    http_status = 409
    error_type = "conflict_error"
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(SuanliError):
    http_status = 409
    error_type = "invalid_request_error"
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class PayloadTooLarge(SuanliError):
    http_status = 413
    error_type = "invalid_request_error"
    grpc_code = grpc.StatusCode.OUT_OF_RANGE


class RateLimited(SuanliError):
    http_status = 429
    error_type = "rate_limit_error"
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SuanliError):
    http_status = 503
    error_type = "service_unavailable_error"
    grpc_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(SuanliError):
    http_status = 504
    error_type = "timeout_error"
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


ERROR_CLASSES: tuple[type[SuanliError], ...] = (
    InvalidRequest,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    Conflict,
    FailedPrecondition,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    DeadlineExceeded,
    SuanliError,
)
_BY_NAME = {cls.__name__: cls for cls in ERROR_CLASSES}
_BY_GRPC_CODE = {cls.grpc_code: cls for cls in reversed(ERROR_CLASSES)}


def error_class_named(name: str) -> type[SuanliError] | None:
    return _BY_NAME.get(name)


def error_class_for_grpc(code: grpc.StatusCode) -> type[SuanliError]:
    return _BY_GRPC_CODE.get(code, SuanliError)

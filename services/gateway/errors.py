"""One error type for both APIs: the HTTP status + code of ``libs.common.http``'s error shape, and the gRPC code."""

from __future__ import annotations

import grpc

from libs.common.auth import AuthError, Unauthenticated
from libs.common.http import ApiError

_GRPC_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


class GatewayError(ApiError):
    """An ``ApiError`` (so FastAPI answers it in the shared error shape) that also knows its gRPC status."""

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _GRPC_BY_HTTP.get(self.status, grpc.StatusCode.UNKNOWN)


def unauthenticated(message: str = "missing or unknown API key") -> GatewayError:
    return GatewayError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


def from_auth(exc: AuthError) -> GatewayError:
    """The key check's refusal (``libs.common.auth``) as 401/403, which gRPC answers too."""
    if isinstance(exc, Unauthenticated):
        return unauthenticated(str(exc))
    return GatewayError(403, "forbidden", str(exc))


def rate_limited(retry_after: float) -> GatewayError:
    seconds = max(1, int(retry_after + 0.999))
    return GatewayError(429, "rate_limited", f"rate limit exceeded; retry in {seconds}s", {"Retry-After": str(seconds)})


def unavailable(message: str) -> GatewayError:
    return GatewayError(503, "unavailable", message, headers={"Retry-After": "5"})


def invalid(message: str) -> GatewayError:
    return GatewayError(400, "invalid_request", message)


def unsupported(param: str, message: str) -> GatewayError:
    """A request parameter this product does not honour (or a value it cannot): 400 in the one error shape, its
    message starting with the parameter's name (what OpenAI clients show)."""
    return GatewayError(400, "invalid_request", f"{param}: {message}")

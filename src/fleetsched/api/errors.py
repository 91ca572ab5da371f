"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``.

``type`` follows the error classes of OpenAI's client libraries, as vLLM names them
(``BadRequestError`` for 400, ``NotFoundError`` for 404, ...); ``code`` is the HTTP status, as
vLLM sends it, unless a string code is given (OpenAI's ``context_length_exceeded`` style).
"""

from __future__ import annotations

import json
from typing import Any

from fleetsched.errors import FleetschedError

#: HTTP status -> ``error.type``.
ERROR_TYPES: dict[int, str] = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    408: "RequestTimeoutError",
    409: "ConflictError",
    413: "RequestTooLargeError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")


def error_body(
    status: int, message: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """The JSON body of an error answered with HTTP ``status``."""
    return {
        "error": {
            "message": message,
            "type": error_type(status),
            "param": param,
            "code": status if code is None else code,
        }
    }


class APIError(FleetschedError):
    """An error to answer over HTTP: its status and OpenAI-style body.

    ``param`` names the request field at fault (a dotted path such as
    ``messages.0.content``), or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.param, self.code)

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param)


__all__ = ["ERROR_TYPES", "APIError", "bad_request", "error_body", "error_type"]

"""OpenAI-protocol pieces shared by the emulator, the gateway and ``bench``: request parsing,
error bodies, SSE framing, the documented deterministic tokenizer and filler tokens."""

from fleetsched.api.errors import APIError, error_body
from fleetsched.api.request import GenerationRequest, parse_request
from fleetsched.api.sse import DONE, SSEDecoder, sse_data

__all__ = [
    "DONE",
    "APIError",
    "GenerationRequest",
    "SSEDecoder",
    "error_body",
    "parse_request",
    "sse_data",
]

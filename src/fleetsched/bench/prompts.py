"""Request bodies of exact token counts, with the trace's prefix sharing made real.

A request's prompt is built from its prefix block hashes: full block ``i`` (of
``hash_block_tokens`` tokens) is :func:`~fleetsched.api.filler.keyed_ids` of
``block_hashes[i]``, so requests whose hashes agree up to block ``i`` (Mooncake ``hash_ids``,
shared system prompts, earlier turns of a session) really share their first ``i + 1`` blocks,
token for token, and an engine's prefix cache sees the sharing the trace describes. The rest
of the prompt is keyed by the request alone (unique). Outputs are forced to the trace's
length with ``max_tokens`` + ``ignore_eos`` (vLLM's and llama.cpp's field).

``/v1/completions`` gets the token ids themselves: the count is exact on any server. The
chat endpoint gets text (the ids decoded with the documented tokenizer) minus the chat
template's overhead, which is exact against the emulator and approximate elsewhere.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np

from fleetsched.api.filler import keyed_ids
from fleetsched.api.tokenizer import decode
from fleetsched.core.request import Request

Endpoint = Literal["completions", "chat"]

_TAIL_SALT = 0x7A11_0000_0000


def prompt_token_ids(req: Request, seed: int = 0, length: int | None = None) -> np.ndarray:
    """``length`` (default ``req.prompt_tokens``) token ids: shared blocks, then a unique tail."""
    n = req.prompt_tokens if length is None else length
    hbt = req.hash_block_tokens
    nb = min(len(req.block_hashes), n // hbt) if hbt > 0 else 0
    parts = []
    if nb:
        parts.append(keyed_ids(req.block_hashes[:nb], hbt))
    tail = n - nb * hbt
    if tail > 0:
        parts.append(keyed_ids([hash((_TAIL_SALT, seed, req.id))], tail))
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def request_body(
    req: Request,
    *,
    endpoint: Endpoint = "completions",
    model: str | None = None,
    stream: bool = True,
    seed: int = 0,
    chat_overhead: int = 0,
    ignore_eos: bool = True,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON body asking for ``req``: its prompt and exactly its output length."""
    body: dict[str, Any] = {}
    if model is not None:
        body["model"] = model
    if endpoint == "completions":
        body["prompt"] = prompt_token_ids(req, seed).tolist()
    else:
        n = max(req.prompt_tokens - chat_overhead, 1)
        body["messages"] = [{"role": "user", "content": decode(prompt_token_ids(req, seed, n))}]
    body["max_tokens"] = max(req.output_tokens, 1)
    if ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = max(req.output_tokens, 1)
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    if req.tenant != "default":
        body["user"] = req.tenant
    if req.priority:
        body["priority"] = -req.priority  # vLLM: lower is earlier; fleetsched: higher first
    if extra:
        body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


__all__ = ["Endpoint", "prompt_token_ids", "request_body"]

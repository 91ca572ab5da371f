"""The few fields of a request body that routing needs, read without changing the body.

The gateway forwards the client's bytes unchanged; from the parsed JSON it reads only
``model``, ``stream``, ``prompt`` or ``messages`` (to count and hash the prompt), ``user``,
``max_tokens`` / ``max_completion_tokens`` and ``priority``, and checks only their types (400
naming the field). Everything else -- sampling knobs, tools, ``n``, images -- is the
backend's business, checked there.

Prompt tokens: token ids as sent, else the text under the documented tokenizer
(``fleetsched-words-v1``; chat messages rendered with its template). That is exact against
the emulator and an estimate for a real model; it only has to be deterministic, so that equal
prefixes hash equal and a cache-aware router sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from fleetsched.api import tokenizer
from fleetsched.api.errors import bad_request
from fleetsched.api.request import load_json_object


def _load(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: orjson (3-4x faster than json on token-id lists), and
    json for what orjson refuses (integers past 64 bits, NaN), with its 400 message."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return load_json_object(body)
    if not isinstance(obj, dict):
        return load_json_object(body)
    return obj


@dataclass(slots=True)
class RoutingFields:
    model: str | None
    stream: bool
    user: str | None
    max_tokens: int | None
    priority: int
    #: Prompt token ids (of the first prompt of a batch).
    token_ids: list[int]
    #: Prompt tokens of the whole request.
    prompt_tokens: int


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _opt(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    v = body.get(name)
    if v is not None and (not isinstance(v, kind) or (kind is int and isinstance(v, bool))):
        raise bad_request(f"'{name}' must be {what}, got {_type_name(v)}", name)
    return v


def _ids(v: list[Any], where: str) -> list[int]:
    # Each id is the backend's to check (range, vocabulary); here only what hashing needs:
    # a list of integers (the hash of a block fails on anything unhashable).
    if type(v[0]) is not int:
        raise bad_request(
            f"'{where}' must hold integers (token ids), got {_type_name(v[0])} at 0", where
        )
    return v


def _prompt(v: Any) -> tuple[list[int], int]:
    if v is None:
        raise bad_request("'prompt' is required", "prompt")
    if isinstance(v, str):
        ids = tokenizer.encode(v)
        return ids, len(ids)
    if isinstance(v, list) and v:
        if isinstance(v[0], int) and not isinstance(v[0], bool):
            ids = _ids(v, "prompt")
            return ids, len(ids)
        if all(isinstance(p, str) for p in v):  # a batch of texts
            first = tokenizer.encode(v[0])
            return first, len(first) + sum(tokenizer.count(p) for p in v[1:])
        if all(isinstance(p, list) for p in v):  # a batch of token-id lists
            lists = [_ids(p, f"prompt.{i}") for i, p in enumerate(v)]
            return lists[0], sum(map(len, lists))
    raise bad_request(
        f"'prompt' must be a string, a list of token ids or a list of either, got {_type_name(v)}",
        "prompt",
    )


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):  # content parts: text counts, other parts are the backend's
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    raise bad_request(
        f"content must be a string or a list of parts, got {_type_name(content)}", where
    )


def _messages(v: Any) -> list[int]:
    if not isinstance(v, list) or not v:
        raise bad_request("'messages' must be a non-empty list", "messages")
    msgs = []
    for i, m in enumerate(v):
        if not isinstance(m, dict):
            raise bad_request(
                f"each message must be an object, got {_type_name(m)}", f"messages.{i}"
            )
        role = m.get("role")
        if not isinstance(role, str):
            raise bad_request("'role' must be a string", f"messages.{i}.role")
        msgs.append((role, _text(m.get("content"), f"messages.{i}.content")))
    return tokenizer.encode(tokenizer.render_chat(msgs))


def routing_fields(body: bytes, chat: bool) -> RoutingFields:
    """Read the routing fields of a completion (``chat=False``) or chat request body."""
    b = _load(body)
    model = _opt(b, "model", str, "a string")
    stream = _opt(b, "stream", bool, "a boolean") or False
    user = _opt(b, "user", str, "a string")
    mt = _opt(b, "max_completion_tokens", int, "an integer") if chat else None
    if mt is None:
        mt = _opt(b, "max_tokens", int, "an integer")
    pr = _opt(b, "priority", int, "an integer") or 0
    if chat:
        ids = _messages(b.get("messages"))
        n = len(ids)
    else:
        ids, n = _prompt(b.get("prompt"))
    return RoutingFields(model, stream, user, mt, pr, ids, n)


__all__ = ["RoutingFields", "routing_fields"]

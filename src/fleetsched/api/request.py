"""The fields of an OpenAI completion or chat request that serving needs, checked.

:func:`parse_request` reads a JSON body of ``POST /v1/completions`` or
``POST /v1/chat/completions`` and returns a :class:`GenerationRequest`. Anything wrong raises
:class:`~fleetsched.api.errors.APIError` 400 whose ``param`` names the field (a dotted path,
e.g. ``messages.1.content``). Fields not listed here are ignored, as vLLM ignores them.

Conventions follow vLLM's OpenAI server: ``prompt`` is a string, a list of token ids, or a
one-element list of either; chat ``max_completion_tokens`` wins over ``max_tokens``;
``min_tokens`` and ``ignore_eos`` are vLLM's extra sampling fields; ``priority`` is vLLM's
(lower is served earlier); ``stream_options`` is only allowed with ``stream: true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from fleetsched.api.errors import APIError, bad_request

Kind = Literal["completions", "chat"]


@dataclass(slots=True)
class GenerationRequest:
    kind: Kind
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    #: ``/v1/completions`` with token ids: exactly these tokens.
    prompt_ids: list[int] | None = None
    #: ``/v1/completions`` with text.
    prompt_text: str | None = None
    #: ``/v1/chat/completions``: (role, text content) pairs.
    messages: list[tuple[str, str]] | None = None
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    n: int = 1
    user: str | None = None
    priority: int = 0


def load_json_object(body: bytes | str) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying why not."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"invalid JSON body: {e}") from None
    if not isinstance(obj, dict):
        raise bad_request(f"the body must be a JSON object, got {type(obj).__name__}")
    return obj


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _int(body: dict[str, Any], name: str, default: int | None, lo: int) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad_request(f"'{name}' must be an integer, got {_type_name(v)}", name)
    if v < lo:
        raise bad_request(f"'{name}' must be at least {lo}, got {v}", name)
    return v


def _bool(body: dict[str, Any], name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad_request(f"'{name}' must be a boolean, got {_type_name(v)}", name)
    return v


def _str(body: dict[str, Any], name: str) -> str | None:
    v = body.get(name)
    if v is not None and not isinstance(v, str):
        raise bad_request(f"'{name}' must be a string, got {_type_name(v)}", name)
    return v


def _token_ids(v: list[Any], where: str) -> list[int]:
    if set(map(type, v)) != {int}:  # type(), not isinstance: a bool is no token id
        i, t = next((i, t) for i, t in enumerate(v) if type(t) is not int)
        raise bad_request(
            f"'{where}' must hold integers (token ids), got {_type_name(t)} at {i}", where
        )
    lo = min(v)
    if lo < 0:
        raise bad_request(f"token id {lo} at {where}.{v.index(lo)} is negative", where)
    return v


def _prompt(v: Any) -> tuple[list[int] | None, str | None]:
    if v is None:
        raise bad_request("'prompt' is required", "prompt")
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str | list):
        v = v[0]  # a batch of one prompt
    if isinstance(v, str):
        return None, v
    if isinstance(v, list):
        if not v:
            raise bad_request("'prompt' must not be empty", "prompt")
        if isinstance(v[0], str | list):
            raise bad_request("only one prompt per request is supported", "prompt")
        return _token_ids(v, "prompt"), None
    raise bad_request(
        f"'prompt' must be a string or a list of token ids, got {_type_name(v)}", "prompt"
    )


def _content(v: Any, where: str) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        texts = []
        for j, part in enumerate(v):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise bad_request("only text content parts are supported", f"{where}.{j}")
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request("'text' must be a string", f"{where}.{j}.text")
            texts.append(text)
        return "\n".join(texts)
    raise bad_request(f"content must be a string or a list of parts, got {_type_name(v)}", where)


def _messages(v: Any) -> list[tuple[str, str]]:
    if v is None:
        raise bad_request("'messages' is required", "messages")
    if not isinstance(v, list) or not v:
        raise bad_request("'messages' must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(v):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise bad_request(f"each message must be an object, got {_type_name(m)}", where)
        role = m.get("role")
        if not isinstance(role, str) or not role:
            raise bad_request("'role' must be a non-empty string", f"{where}.role")
        out.append((role, _content(m.get("content"), f"{where}.content")))
    return out


def parse_request(body: bytes | str | dict[str, Any], kind: Kind) -> GenerationRequest:
    """Check and extract the serving fields of a completion (``kind="completions"``) or chat
    (``kind="chat"``) request body."""
    b = body if isinstance(body, dict) else load_json_object(body)
    r = GenerationRequest(kind=kind)
    r.model = _str(b, "model")
    r.stream = _bool(b, "stream", False)
    so = b.get("stream_options")
    if so is not None:
        if not isinstance(so, dict):
            raise bad_request("'stream_options' must be an object", "stream_options")
        if not r.stream:
            raise bad_request(
                "stream_options can only be defined when 'stream' is true", "stream_options"
            )
        r.include_usage = _bool(so, "include_usage", False)
    if kind == "completions":
        r.prompt_ids, r.prompt_text = _prompt(b.get("prompt"))
        r.max_tokens = _int(b, "max_tokens", None, 1)
    else:
        r.messages = _messages(b.get("messages"))
        mct = _int(b, "max_completion_tokens", None, 1)
        r.max_tokens = mct if mct is not None else _int(b, "max_tokens", None, 1)
    r.min_tokens = _int(b, "min_tokens", 0, 0) or 0
    if r.max_tokens is not None and r.min_tokens > r.max_tokens:
        raise bad_request(
            f"'min_tokens' ({r.min_tokens}) must be at most 'max_tokens' ({r.max_tokens})",
            "min_tokens",
        )
    r.ignore_eos = _bool(b, "ignore_eos", False)
    r.n = _int(b, "n", 1, 1) or 1
    if r.n != 1:
        raise bad_request("only n=1 is supported", "n")
    r.user = _str(b, "user")
    pr = b.get("priority", 0)
    if isinstance(pr, bool) or not isinstance(pr, int):
        raise bad_request(f"'priority' must be an integer, got {_type_name(pr)}", "priority")
    r.priority = pr
    return r


__all__ = ["APIError", "GenerationRequest", "Kind", "load_json_object", "parse_request"]

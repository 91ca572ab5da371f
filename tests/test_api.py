"""The OpenAI-protocol pieces: tokenizer, request parsing, error bodies, SSE, filler."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.api import tokenizer as tok
from fleetsched.api.errors import APIError, error_body
from fleetsched.api.filler import eos_length, keyed_ids, output_ids, prompt_digest
from fleetsched.api.request import parse_request
from fleetsched.api.sse import DONE, SSEDecoder, sse_comment, sse_data


# ------------------------------------------------------------------------------ tokenizer
def test_tokenizer_documented_examples() -> None:
    pieces = tok.PIECE_RE.findall("Hello, world 42!")
    assert pieces == ["Hello", ",", "world", "4", "2", "!"]
    assert tok.count("Hello, world 42!") == 6
    assert tok.PIECE_RE.findall("tokenizer") == ["tokeni", "zer"]
    assert tok.count("  \n\t ") == 0
    # Out-of-vocabulary pieces hash with crc32, vocabulary words map to their id.
    assert tok.encode("Hello")[0] == zlib.crc32(b"Hello") % tok.VOCAB_SIZE
    assert tok.encode(" ba be") == [0, 1]
    assert tok.decode([0, 1]) == " ba be"
    # Each role tag costs 4 tokens plus its role's pieces.
    assert tok.chat_overhead(["user"]) == 5 + 6
    assert tok.count(tok.render_chat([("system", "x"), ("user", "y z")])) == 5 + 1 + 5 + 2 + 6


def test_vocabulary_words_are_distinct_single_pieces() -> None:
    assert len(tok.WORDS) == tok.VOCAB_SIZE == len(set(tok.WORDS))
    assert all(tok.PIECE_RE.fullmatch(w) for w in tok.WORDS[::97])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, tok.VOCAB_SIZE - 1), max_size=300))
def test_decode_then_encode_gives_the_ids_back(ids: list[int]) -> None:
    assert tok.encode(tok.decode(ids)) == ids
    assert tok.count(tok.decode(ids)) == len(ids)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_encode_counts_what_count_counts(text: str) -> None:
    ids = tok.encode(text)
    assert len(ids) == tok.count(text)
    assert all(0 <= i < tok.VOCAB_SIZE for i in ids)
    assert ids == tok.encode(text)  # deterministic


# ------------------------------------------------------------------------------ requests
def test_completion_request_fields() -> None:
    r = parse_request(
        b'{"model":"m","prompt":[3,4,5],"max_tokens":7,"stream":true,'
        b'"stream_options":{"include_usage":true},"ignore_eos":true,"min_tokens":7,'
        b'"user":"t1","priority":-2,"temperature":0.3}',
        "completions",
    )
    assert (r.model, r.prompt_ids, r.prompt_text, r.max_tokens) == ("m", [3, 4, 5], None, 7)
    assert (r.stream, r.include_usage, r.ignore_eos, r.min_tokens) == (True, True, True, 7)
    assert (r.user, r.priority, r.n) == ("t1", -2, 1)
    assert parse_request({"prompt": ["hi"]}, "completions").prompt_text == "hi"
    assert parse_request({"prompt": [[1, 2]]}, "completions").prompt_ids == [1, 2]


def test_chat_request_fields() -> None:
    r = parse_request(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "max_tokens": 9,
            "max_completion_tokens": 4,
        },
        "chat",
    )
    assert r.messages == [("system", "be brief"), ("user", "a\nb")]
    assert r.max_tokens == 4  # max_completion_tokens wins, as in the OpenAI API


@pytest.mark.parametrize(
    ("body", "kind", "param", "fragment"),
    [
        (b"{not json", "completions", None, "invalid JSON"),
        (b"[1, 2]", "completions", None, "JSON object"),
        (b'{"prompt": 5}', "completions", "prompt", "string or a list"),
        (b'{"prompt": []}', "completions", "prompt", "empty"),
        (b'{"prompt": ["a", "b"]}', "completions", "prompt", "one prompt"),
        (b'{"prompt": [1, "x"]}', "completions", "prompt", "integers"),
        (b'{"prompt": [1, -4]}', "completions", "prompt", "negative"),
        (b'{"prompt": "x", "max_tokens": "9"}', "completions", "max_tokens", "integer"),
        (b'{"prompt": "x", "max_tokens": 0}', "completions", "max_tokens", "at least 1"),
        (b'{"prompt": "x", "max_tokens": true}', "completions", "max_tokens", "integer"),
        (b'{"prompt": "x", "stream": "yes"}', "completions", "stream", "boolean"),
        (b'{"prompt": "x", "stream_options": {}}', "completions", "stream_options", "stream"),
        (b'{"prompt": "x", "n": 2}', "completions", "n", "n=1"),
        (
            b'{"prompt": "x", "min_tokens": 5, "max_tokens": 2}',
            "completions",
            "min_tokens",
            "at most",
        ),
        (b'{"prompt": "x", "model": 3}', "completions", "model", "string"),
        (b'{"prompt": "x", "user": 3}', "completions", "user", "string"),
        (b'{"prompt": "x", "priority": "high"}', "completions", "priority", "integer"),
        (b"{}", "chat", "messages", "required"),
        (b'{"messages": []}', "chat", "messages", "non-empty"),
        (b'{"messages": ["hi"]}', "chat", "messages.0", "object"),
        (b'{"messages": [{"content": "hi"}]}', "chat", "messages.0.role", "role"),
        (
            b'{"messages": [{"role": "user", "content": 7}]}',
            "chat",
            "messages.0.content",
            "content",
        ),
        (
            b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
            "chat",
            "messages.0.content.0",
            "text",
        ),
    ],
)
def test_bad_requests_get_a_400_naming_the_field(
    body: bytes, kind: str, param: str | None, fragment: str
) -> None:
    with pytest.raises(APIError) as e:
        parse_request(body, kind)  # type: ignore[arg-type]
    assert e.value.status == 400
    assert e.value.param == param
    assert fragment in e.value.message
    b = e.value.body()["error"]
    assert b == {"message": e.value.message, "type": "BadRequestError", "param": param, "code": 400}


def test_error_bodies_follow_openai_shape() -> None:
    assert error_body(404, "no such model", "model") == {
        "error": {
            "message": "no such model",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }
    assert error_body(429, "slow down")["error"]["type"] == "RateLimitError"
    assert error_body(503, "down", code="overloaded")["error"]["code"] == "overloaded"
    assert json.loads(APIError(500, "boom").json_bytes())["error"]["type"] == "InternalServerError"


# ------------------------------------------------------------------------------ SSE
def test_sse_framing() -> None:
    assert sse_data({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert DONE == b"data: [DONE]\n\n"
    d = SSEDecoder()
    assert d.feed(b"data: {}\n\n" + sse_comment("keepalive") + b"data: x\r\ndata: y\r\n\r\n") == [
        b"{}",
        b"x\ny",
    ]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(alphabet='abc{}:" ', min_size=1, max_size=20), max_size=15),
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
)
def test_sse_decoder_is_independent_of_how_bytes_are_split(
    events: list[str], cuts: list[int]
) -> None:
    stream = b"".join(b"data: " + e.strip().encode() + b"\n\n" for e in events if e.strip())
    want = [e.strip().encode() for e in events if e.strip()]
    d = SSEDecoder()
    got, i, k = [], 0, 0
    while i < len(stream):
        n = cuts[k % len(cuts)]
        got += d.feed(stream[i : i + n])
        i += n
        k += 1
    assert got == want
    assert d.pending == b""


# ------------------------------------------------------------------------------ filler
def test_filler_is_deterministic_per_seed_and_prompt() -> None:
    d1, d2 = prompt_digest([1, 2, 3]), prompt_digest([1, 2, 4])
    assert np.array_equal(output_ids(0, d1, 50), output_ids(0, d1, 50))
    assert not np.array_equal(output_ids(0, d1, 50), output_ids(1, d1, 50))
    assert not np.array_equal(output_ids(0, d1, 50), output_ids(0, d2, 50))
    assert np.array_equal(output_ids(0, d1, 80)[:50], output_ids(0, d1, 50))
    assert eos_length(0, d1, 100.0) == eos_length(0, d1, 100.0) >= 1
    lengths = [eos_length(0, prompt_digest([i]), 100.0) for i in range(2000)]
    assert 90 < np.mean(lengths) < 110  # geometric with mean 100


def test_keyed_ids_share_blocks_exactly_where_keys_agree() -> None:
    a = keyed_ids([7, -3, 11], 16).reshape(3, 16)
    b = keyed_ids([7, -3, 12], 16).reshape(3, 16)
    assert np.array_equal(a[:2], b[:2])
    assert not np.array_equal(a[2], b[2])
    assert a.min() >= 0 and a.max() < tok.VOCAB_SIZE
    assert keyed_ids([], 16).size == 0

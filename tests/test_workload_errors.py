"""Malformed traces raise InputError naming file:line and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetsched.errors import InputError
from fleetsched.workload import detect_format, load_trace

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
MC = '{{"timestamp": {t}, "input_length": {i}, "output_length": {o}, "hash_ids": [1, 2]}}\n'
NATIVE_OK = '{"id": 0, "arrival_s": 0.5, "prompt_tokens": 10, "output_tokens": 2}\n'


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(path: Path, fmt: str = "auto") -> InputError:
    with pytest.raises(InputError) as info:
        list(load_trace(path, fmt))
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    with pytest.raises(InputError) as info:
        load_trace(p)  # raised eagerly, before iteration
    assert str(info.value) == f"{p}: no such file"
    for fmt in ("azure", "mooncake", "vidur", "burstgpt", "native"):
        with pytest.raises(InputError, match="no such file"):
            load_trace(p, fmt)


def test_directory_is_not_a_trace(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_trace(tmp_path, "azure")


@pytest.mark.parametrize("fmt", ["auto", "azure", "mooncake", "vidur", "burstgpt", "native"])
@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, fmt: str, text: str) -> None:
    p = _write(tmp_path, "empty.csv", text)
    with pytest.raises(InputError) as info:
        list(load_trace(p, fmt))
    assert str(info.value).startswith(f"{p}:1: empty file")


def test_header_only_has_no_requests(tmp_path: Path) -> None:
    p = _write(tmp_path, "h.csv", AZ_HEADER)
    assert str(_error(p)) == f"{p}:2: no requests: the file has no data rows"


def test_unknown_header_names_the_known_ones(tmp_path: Path) -> None:
    p = _write(tmp_path, "x.csv", "time,prompt,output\n0,1,1\n")
    with pytest.raises(InputError) as info:
        detect_format(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}:1: unknown trace format")
    assert "TIMESTAMP,ContextTokens,GeneratedTokens" in msg
    assert "arrived_at,num_prefill_tokens,num_decode_tokens" in msg


def test_wrong_columns_name_the_expected_header(tmp_path: Path) -> None:
    p = _write(tmp_path, "az.csv", "TIMESTAMP,Context,GeneratedTokens\n2023-01-01 00:00:00,1,1\n")
    msg = str(_error(p))  # auto-detected as Azure from TIMESTAMP
    assert msg.startswith(f"{p}:1: missing column(s) ContextTokens")
    assert "'TIMESTAMP,ContextTokens,GeneratedTokens'" in msg
    assert "found 'TIMESTAMP,Context,GeneratedTokens'" in msg

    p = _write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens\n1,a,1,1\n")
    msg = str(_error(p, "burstgpt"))
    assert msg.startswith(f"{p}:1: missing column(s) Total tokens, Log Type")

    p = _write(tmp_path, "v.csv", "num_prefill_tokens,foo\n1,2\n")
    msg = str(_error(p, "vidur"))
    assert msg.startswith(f"{p}:1: missing columns: a Vidur trace needs the header")
    assert "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio" in msg

    p = _write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 5}\n')
    assert str(_error(p, "mooncake")).startswith(f"{p}:1: missing key 'output_length'")

    p = _write(tmp_path, "n.jsonl", '{"id": 0, "arrival_s": 0, "prompt_tokens": 5}\n')
    msg = str(_error(p))
    assert msg.startswith(f"{p}:1: missing key(s) output_tokens")


def test_wrong_field_count(tmp_path: Path) -> None:
    p = _write(
        tmp_path, "az.csv", AZ_HEADER + "2023-01-01 00:00:00.0,1,1\n2023-01-01 00:00:01.0,5\n"
    )
    assert str(_error(p)) == (f"{p}:3: expected 3 comma-separated fields like the header, got 2")


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        (
            "az.csv",
            AZ_HEADER + "2023-01-01 00:00:00.0,12,3\n2023-01-01 00:00:01.0,abc,3\n",
            3,
            "ContextTokens: expected an integer token count, got 'abc'",
        ),
        (
            "az.csv",
            AZ_HEADER + "2023-01-01 00:00:00.0,12,3.5\n",
            2,
            "GeneratedTokens: expected an integer token count, got '3.5'",
        ),
        (
            "az.csv",
            AZ_HEADER + "yesterday,12,3\n",
            2,
            "TIMESTAMP: expected 'YYYY-MM-DD HH:MM:SS.fffffff', got 'yesterday'",
        ),
        (
            "v.csv",
            "arrived_at,num_prefill_tokens,num_decode_tokens\nsoon,1,1\n",
            2,
            "arrived_at: expected a number, got 'soon'",
        ),
        (
            "v.csv",
            "arrived_at,num_prefill_tokens,num_decode_tokens\nnan,1,1\n",
            2,
            "arrived_at: expected a finite number, got 'nan'",
        ),
        (
            "m.jsonl",
            MC.format(t=0, i=5, o=1) + MC.format(t='"x"', i=5, o=1),
            2,
            "timestamp: expected a number, got 'x'",
        ),
        (
            "m.jsonl",
            MC.format(t=0, i="null", o=1),
            1,
            "input_length: expected an integer token count, got None",
        ),
        (
            "n.jsonl",
            '{"id": 0, "arrival_s": "0", "prompt_tokens": 5, "output_tokens": 1}\n',
            1,
            "arrival_s: expected a number of seconds, got '0'",
        ),
        (
            "n.jsonl",
            '{"id": 0, "arrival_s": 0, "prompt_tokens": 5, "output_tokens": true}\n',
            1,
            "output_tokens: expected an integer, got True",
        ),
        (
            "n.jsonl",
            NATIVE_OK.replace('"id": 0', '"id": 0, "block_hashes": [1, "a"]'),
            1,
            "block_hashes: expected a list of integers, got [1, 'a']",
        ),
    ],
)
def test_non_numeric_values(tmp_path: Path, name: str, text: str, line: int, problem: str) -> None:
    p = _write(tmp_path, name, text)
    assert str(_error(p)) == f"{p}:{line}: {problem}"


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        (
            "az.csv",
            AZ_HEADER + "2023-01-01 00:00:00.0,-12,3\n",
            2,
            "ContextTokens: negative value '-12'",
        ),
        (
            "v.csv",
            "arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n-2,1,1\n",
            3,
            "arrived_at: negative value '-2'",
        ),
        (
            "b.csv",
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,m,5,-1,4,x\n",
            2,
            "Response tokens: negative value '-1'",
        ),
        ("m.jsonl", MC.format(t=0, i=5, o=-4), 1, "output_length: negative value -4"),
        (
            "n.jsonl",
            NATIVE_OK.replace('"prompt_tokens": 10', '"prompt_tokens": -1'),
            1,
            "prompt_tokens: negative value -1",
        ),
        (
            "n.jsonl",
            NATIVE_OK.replace('"output_tokens": 2', '"output_tokens": 0'),
            1,
            "output_tokens: must be at least 1, got 0",
        ),
    ],
)
def test_negative_values(tmp_path: Path, name: str, text: str, line: int, problem: str) -> None:
    p = _write(tmp_path, name, text)
    assert str(_error(p)) == f"{p}:{line}: {problem}"


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("az.csv", AZ_HEADER + "2023-01-01 00:00:05.0,1,1\n2023-01-01 00:00:04.9,1,1\n", 3),
        ("v.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n3,1,1\n3,1,1\n2.5,1,1\n", 4),
        (
            "b.csv",
            "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
            "9,m,1,1,2,x\n8,m,1,1,2,x\n",
            3,
        ),
        ("m.jsonl", MC.format(t=100, i=5, o=1) + MC.format(t=99, i=5, o=1), 2),
        ("n.jsonl", NATIVE_OK + NATIVE_OK.replace("0.5", "0.25"), 2),
    ],
)
def test_backwards_timestamps(tmp_path: Path, name: str, text: str, line: int) -> None:
    p = _write(tmp_path, name, text)
    msg = str(_error(p))
    assert msg.startswith(f"{p}:{line}: timestamp goes backwards")
    assert msg.endswith("(traces must be sorted by arrival time)")


def test_backwards_message_shows_both_times(tmp_path: Path) -> None:
    text = AZ_HEADER + "2023-01-01 00:00:05.0,1,1\n2023-01-01 00:00:04.9,1,1\n"
    p = _write(tmp_path, "az.csv", text)
    assert (
        "TIMESTAMP 2023-01-01 00:00:04.9 is earlier than the previous row's "
        "2023-01-01 00:00:05.0" in str(_error(p))
    )


@pytest.mark.parametrize("fmt", ["mooncake", "native"])
def test_bad_json(tmp_path: Path, fmt: str) -> None:
    first = MC.format(t=0, i=5, o=1) if fmt == "mooncake" else NATIVE_OK
    p = _write(tmp_path, "t.jsonl", first + "\n" + '{"timestamp": 1, "input_length": \n')
    msg = str(_error(p, fmt))
    assert re.fullmatch(rf"{re.escape(str(p))}:3: bad JSON: Expecting value at column \d+", msg)

    p = _write(tmp_path, "t2.jsonl", first + "[1, 2]\n")
    assert str(_error(p, fmt)) == f"{p}:2: expected a JSON object per line, got list"


def test_bad_json_on_first_line_during_detection(tmp_path: Path) -> None:
    p = _write(tmp_path, "t.jsonl", "{nope}\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(p))}:1: bad JSON"):
        load_trace(p)


def test_native_unknown_key_and_too_many_hashes(tmp_path: Path) -> None:
    p = _write(tmp_path, "n.jsonl", NATIVE_OK.replace('"id": 0', '"id": 0, "tenat": "a"'))
    msg = str(_error(p))
    assert msg.startswith(f"{p}:1: unknown key(s) 'tenat'; allowed keys are id, arrival_s")
    p = _write(tmp_path, "n2.jsonl", NATIVE_OK.replace('"id": 0', '"id": 0, "block_hashes": [1]'))
    assert str(_error(p)) == (
        f"{p}:1: block_hashes: 1 hashes but prompt_tokens=10 has only 0 full blocks of 16 tokens"
    )


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(AZ_HEADER.encode() + b"2023-01-01 00:00:00.0,1,1\n\xff\xfe,1,1\n")
    assert str(_error(p, "azure")).startswith(f"{p}:3: not UTF-8 text")


def test_unknown_format_name(tmp_path: Path) -> None:
    p = _write(tmp_path, "n.jsonl", NATIVE_OK)
    with pytest.raises(InputError, match="unknown trace format 'parquet'; choose one of auto"):
        load_trace(p, "parquet")

"""Native JSONL: lossless round trip, defaults omitted, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetsched.core.config import SessionConfig, SyntheticConfig
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.workload import detect_format, generate, load_trace, read_jsonl, write_jsonl

_text = st.text(min_size=0, max_size=12)
_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    _text,
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def requests(draw: st.DrawFn) -> list[Request]:
    n = draw(st.integers(1, 20))
    times = sorted(draw(st.lists(st.floats(0, 1e7, allow_nan=False), min_size=n, max_size=n)))
    out = []
    for i, t in enumerate(times):
        hb = draw(st.sampled_from([16, 512, 1, 7]))
        prompt = draw(st.integers(1, 5000))
        nh = draw(st.integers(0, min(prompt // hb, 30)))
        out.append(
            Request(
                id=draw(st.integers(0, 2**40)) if i % 3 == 2 else i,
                arrival_s=t,
                prompt_tokens=prompt,
                output_tokens=draw(st.integers(1, 10**6)),
                block_hashes=tuple(
                    draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=nh, max_size=nh))
                ),
                hash_block_tokens=hb,
                tenant=draw(st.sampled_from(["default", "a", "ténant ✓", ""])),
                priority=draw(st.integers(-5, 5)),
                session_id=draw(st.one_of(st.none(), _text)),
                slo_class=draw(st.sampled_from(["default", "batch"])),
                model=draw(st.one_of(st.none(), _text)),
                deadline_s=draw(st.one_of(st.none(), st.floats(0, 1e9))),
                extra=draw(st.dictionaries(_text, _json_scalar, max_size=3)),
            )
        )
    return out


@settings(max_examples=30, deadline=None)
@given(reqs=requests())
def test_round_trip_is_lossless(
    tmp_path_factory: pytest.TempPathFactory, reqs: list[Request]
) -> None:
    p = tmp_path_factory.mktemp("rt") / "t.jsonl"
    assert write_jsonl(iter(reqs), p) == len(reqs)
    assert list(read_jsonl(p)) == reqs
    assert detect_format(p) == "native"


def test_round_trip_of_a_synthetic_workload_and_gzip(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        num_requests=500, sessions=SessionConfig(turns_mean=3), system_prompt_tokens=64, model="m"
    )
    reqs = list(generate(cfg, 1))
    for name in ("w.jsonl", "w.jsonl.gz"):
        write_jsonl(reqs, tmp_path / name)
        assert list(load_trace(tmp_path / name)) == reqs
    assert (tmp_path / "w.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_defaults_are_omitted_and_keys_are_the_documented_ones(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    write_jsonl(
        [
            Request(id=0, arrival_s=1.25, prompt_tokens=40, output_tokens=3),
            Request(
                id=1,
                arrival_s=2.0,
                prompt_tokens=40,
                output_tokens=3,
                block_hashes=(5, 6),
                tenant="t",
                priority=1,
                session_id="s",
                slo_class="c",
                model="m",
                deadline_s=9.0,
                extra={"k": 1},
            ),
        ],
        p,
    )
    lines = [json.loads(x) for x in p.read_text().splitlines()]
    assert lines[0] == {"id": 0, "arrival_s": 1.25, "prompt_tokens": 40, "output_tokens": 3}
    assert lines[1] == {
        "id": 1,
        "arrival_s": 2.0,
        "prompt_tokens": 40,
        "output_tokens": 3,
        "block_hashes": [5, 6],
        "tenant": "t",
        "priority": 1,
        "session_id": "s",
        "slo_class": "c",
        "model": "m",
        "deadline_s": 9.0,
        "extra": {"k": 1},
    }


def test_hand_written_native_file_with_integer_times(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(
        '{"id": 3, "arrival_s": 2, "prompt_tokens": 512, "output_tokens": 1, '
        '"block_hashes": [11], "hash_block_tokens": 512, "deadline_s": null}\n\n'
    )
    (r,) = list(read_jsonl(p))
    assert r == Request(
        id=3,
        arrival_s=2.0,
        prompt_tokens=512,
        output_tokens=1,
        block_hashes=(11,),
        hash_block_tokens=512,
    )


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def bad():
        yield Request(id=0, arrival_s=0.0, prompt_tokens=1, output_tokens=1)
        raise InputError("upstream trace is broken", "x.csv:3")

    p = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="upstream trace is broken"):
        write_jsonl(bad(), p)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write trace"):
        write_jsonl([], tmp_path / "missing-dir" / "t.jsonl")

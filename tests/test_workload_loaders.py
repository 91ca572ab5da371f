"""Trace loaders on the public traces in ../shared/traces and on small files written here."""

from __future__ import annotations

import csv
import gzip
import json
import math
from itertools import islice, pairwise
from pathlib import Path

import pytest

from fleetsched.core.request import chain_hashes
from fleetsched.errors import InputError
from fleetsched.workload import detect_format, load_trace
from fleetsched.workload.azure import parse_wallclock

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"

# (path, format, rows) — rows from ../shared/traces/README.md
PUBLIC = [
    ("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19_366),
    ("azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", 8_819),
    ("mooncake_fast25/conversation_trace.jsonl", "mooncake", 12_031),
    ("mooncake_fast25/synthetic_trace.jsonl", "mooncake", 3_993),
    ("vidur/processed_traces/splitwise_conv.csv", "vidur", 19_366),
    ("vidur/processed_traces/splitwise_code.csv", "vidur", 8_819),
    ("vidur/processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv", "vidur", 30_731),
    (
        "vidur/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
        "vidur",
        28_257,
    ),
]

needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason=f"no public traces at {TRACES}")


def _raw_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@needs_traces
@pytest.mark.parametrize(("rel", "fmt", "rows"), PUBLIC, ids=[p[0].split("/")[-1] for p in PUBLIC])
def test_public_trace_rows_and_invariants(rel: str, fmt: str, rows: int) -> None:
    path = TRACES / rel
    assert detect_format(path) == fmt
    reqs = list(load_trace(path))
    assert len(reqs) == rows
    assert [r.id for r in reqs] == list(range(rows))
    times = [r.arrival_s for r in reqs]
    assert times[0] >= 0
    assert all(a <= b for a, b in pairwise(times))
    assert all(r.prompt_tokens >= 1 and r.output_tokens >= 1 for r in reqs)
    # An explicit format gives the same stream as auto-detection.
    first = next(load_trace(path, fmt))
    assert (first.arrival_s, first.prompt_tokens) == (reqs[0].arrival_s, reqs[0].prompt_tokens)


@needs_traces
def test_azure_times_match_vidur_derived_trace() -> None:
    """Vidur's splitwise_conv.csv is the Azure conv trace with times in seconds from the first
    request: our wall-clock parsing must agree with it row by row."""
    azure = load_trace(TRACES / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    vidur = _raw_csv(TRACES / "vidur/processed_traces/splitwise_conv.csv")
    n = 0
    for a, v in zip(azure, vidur, strict=True):
        assert a.arrival_s == pytest.approx(float(v["arrived_at"]), abs=1e-6)
        assert a.prompt_tokens == int(v["num_prefill_tokens"])
        assert a.output_tokens == int(v["num_decode_tokens"])
        n += 1
    assert n == 19_366


@needs_traces
def test_azure_first_rows_by_hand() -> None:
    reqs = list(islice(load_trace(TRACES / "azure_llm_2023/AzureLLMInferenceTrace_code.csv"), 2))
    # 2023-11-16 18:17:03.9799600,4808,10 / 2023-11-16 18:17:04.0319600,3180,8
    assert (reqs[0].arrival_s, reqs[0].prompt_tokens, reqs[0].output_tokens) == (0.0, 4808, 10)
    assert reqs[1].arrival_s == pytest.approx(0.052, abs=1e-9)
    assert (reqs[1].prompt_tokens, reqs[1].output_tokens) == (3180, 8)


@needs_traces
def test_mooncake_hashes_cover_full_512_blocks_only() -> None:
    path = TRACES / "mooncake_fast25/conversation_trace.jsonl"
    with path.open() as f:
        raw = [json.loads(line) for line in islice(f, 200)]
    reqs = list(islice(load_trace(path), 200))
    for r, d in zip(reqs, raw, strict=True):
        full = d["input_length"] // 512
        assert r.hash_block_tokens == 512
        assert len(r.block_hashes) == full
        assert r.block_hashes == chain_hashes(d["hash_ids"][:full])
        assert r.arrival_s == d["timestamp"] / 1000
        assert (r.prompt_tokens, r.output_tokens) == (d["input_length"], d["output_length"])
    # Requests whose first hash_id is equal share their first chained hash.
    zeros = [r for r, d in zip(reqs, raw, strict=True) if d["hash_ids"][0] == 0 and r.block_hashes]
    assert len(zeros) > 1 and len({r.block_hashes[0] for r in zeros}) == 1


@needs_traces
def test_vidur_length_only_gets_seeded_poisson_arrivals() -> None:
    path = TRACES / "vidur/processed_traces/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    a = [r.arrival_s for r in load_trace(path, generated_rate=10.0, seed=3)]
    b = [r.arrival_s for r in load_trace(path, generated_rate=10.0, seed=3)]
    c = [r.arrival_s for r in islice(load_trace(path, generated_rate=10.0, seed=4), 100)]
    assert a == b and a[:100] != c
    assert a[0] == 0.0
    n = len(a) - 1  # gaps
    rate = n / a[-1]
    assert abs(rate - 10.0) < 5 * 10.0 / math.sqrt(n)
    raw = _raw_csv(path)[:3]
    first = list(islice(load_trace(path), 3))
    assert [r.prompt_tokens for r in first] == [int(d["num_prefill_tokens"]) for d in raw]
    assert [r.output_tokens for r in first] == [int(d["num_decode_tokens"]) for d in raw]


BURST = """Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
5,ChatGPT,472,18,490,Conversation log
45,ChatGPT,1087,0,1087,Conversation log
118,GPT-4,417,276,693,API log
118,ChatGPT,1360,0,1360,API log
"""


def test_burstgpt_small_file(tmp_path: Path) -> None:
    p = tmp_path / "burst.csv"
    p.write_text(BURST)
    assert detect_format(p) == "burstgpt"
    reqs = list(load_trace(p))
    assert [r.id for r in reqs] == [0, 1, 2, 3]
    assert [r.arrival_s for r in reqs] == [5.0, 45.0, 118.0, 118.0]
    assert [r.model for r in reqs] == ["ChatGPT", "ChatGPT", "GPT-4", "ChatGPT"]
    assert [r.prompt_tokens for r in reqs] == [472, 1087, 417, 1360]
    # 0 response tokens (failed requests) are kept, clamped to 1, original value recorded.
    assert [r.output_tokens for r in reqs] == [18, 1, 276, 1]
    assert reqs[1].extra == {"original_output_tokens": 0}
    assert reqs[0].extra == {}


def test_azure_small_file_with_crlf_bom_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "az.csv"
    text = (
        "\ufeffTIMESTAMP,ContextTokens,GeneratedTokens\r\n"
        "2023-11-16 23:59:59.9000000,10,2\r\n"
        "\r\n"
        "2023-11-17 00:00:00.1000001,20,3\r\n"
    )
    p.write_bytes(text.encode())
    reqs = list(load_trace(p))
    assert [r.prompt_tokens for r in reqs] == [10, 20]
    assert reqs[1].arrival_s == pytest.approx(0.2000001, abs=1e-9)  # crosses midnight


def test_parse_wallclock_fractions_and_zones() -> None:
    days: dict[str, int] = {}
    day, ns = parse_wallclock("2023-11-16 18:15:46.6805900", days)
    assert day == 738840  # date(2023, 11, 16).toordinal()
    assert ns == (18 * 3600 + 15 * 60 + 46) * 10**9 + 680_590_000
    assert parse_wallclock("2023-11-16T18:15:46", days)[1] == (18 * 3600 + 15 * 60 + 46) * 10**9
    _, ns = parse_wallclock("2023-11-16 18:15:46.5+01:00", days)
    assert ns == (17 * 3600 + 15 * 60 + 46) * 10**9 + 500_000_000
    assert parse_wallclock("2023-11-16 00:00:00.000000001Z", days)[1] == 1
    for bad in (
        "2023-11-16",
        "2023-11-16 25:00:00",
        "16/11/2023 18:15:46",
        "2023-13-01 00:00:00",
        "2023-11-16 18:15:4x.5",
        "2023-11-16 18:15:46.-5",
    ):
        with pytest.raises(ValueError):
            parse_wallclock(bad, days)


def test_gzip_trace_is_read_transparently(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl.gz"
    lines = [
        {"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [7, 8, 9]},
        {"timestamp": 1500, "input_length": 600, "output_length": 6, "hash_ids": [7, 10]},
    ]
    with gzip.open(p, "wt") as f:
        f.writelines(json.dumps(d) + "\n" for d in lines)
    assert detect_format(p) == "mooncake"
    reqs = list(load_trace(p))
    assert [r.arrival_s for r in reqs] == [0.0, 1.5]
    assert reqs[0].block_hashes == chain_hashes([7, 8])
    assert reqs[1].block_hashes == chain_hashes([7])  # 600 // 512 = 1 full block
    assert reqs[0].block_hashes[0] == reqs[1].block_hashes[0]


def test_loading_is_lazy(tmp_path: Path) -> None:
    """Rows before a bad line are yielded before the error: the file is streamed, not read
    whole. The error names the bad line."""
    p = tmp_path / "v.csv"
    good = "".join(f"{i * 0.5},{100 + i},{10}\n" for i in range(5000))
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + good + "oops,1,1\n")
    it = load_trace(p)
    assert [r.prompt_tokens for r in islice(it, 3)] == [100, 101, 102]
    with pytest.raises(InputError, match=rf"{p}:5002: arrived_at"):
        list(it)


def test_vidur_float_token_counts_are_accepted(tmp_path: Path) -> None:
    p = tmp_path / "v.csv"
    p.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,12.0,3\n1.5,0,0\n")
    reqs = list(load_trace(p))
    assert [(r.prompt_tokens, r.output_tokens) for r in reqs] == [(12, 3), (1, 1)]
    assert reqs[1].extra == {"original_prompt_tokens": 0, "original_output_tokens": 0}

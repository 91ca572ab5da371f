"""Streamed prompts and task classes in the native format and the synthetic generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fleetsched.core.config import StreamingConfig, SyntheticConfig, TaskMixConfig
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.workload import generate, read_jsonl, write_jsonl
from fleetsched.workload.synthetic import split_prompt

BASE = {"id": 0, "arrival_s": 0.0, "prompt_tokens": 100, "output_tokens": 5}


def test_round_trip(tmp_path: Path) -> None:
    r = Request(
        0, 0.0, 100, 5, prompt_chunks=((0.0, 60), (0.5, 40)), task_class="code", difficulty=0.25
    )
    p = tmp_path / "t.jsonl"
    write_jsonl([r], p)
    assert list(read_jsonl(p)) == [r]
    assert '"prompt_chunks":[[0.0,60],[0.5,40]]' in p.read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"prompt_chunks": [[0, 60], [0.5, 30]]}, "prompt_chunks: pieces sum to 90 tokens"),
        ({"prompt_chunks": [[0.2, 100]]}, "prompt_chunks[0]: the first piece arrives"),
        ({"prompt_chunks": [[0, 50], [1.0, 25], [0.5, 25]]}, "prompt_chunks[2]: offset 0.5"),
        ({"prompt_chunks": [[0, 50], [1, 0]]}, "prompt_chunks[1][1]: expected an integer >= 1"),
        ({"prompt_chunks": [[0, 50, 1]]}, "prompt_chunks[0]: expected an [offset_s, tokens]"),
        ({"prompt_chunks": [[0, 50], [-1, 50]]}, "prompt_chunks[1][0]: expected a number"),
        ({"difficulty": 1.5}, "difficulty: expected a number in [0, 1]"),
        ({"task_class": 3}, "task_class: expected a string or null"),
    ],
)
def test_bad_values_name_line_and_key(tmp_path: Path, extra: dict, message: str) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(BASE) + "\n" + json.dumps({**BASE, "id": 1, **extra}) + "\n")
    with pytest.raises(InputError, match=rf"t\.jsonl:2: {re.escape(message)}"):
        list(read_jsonl(p))


def test_split_prompt_by_hand() -> None:
    gaps = iter([0.5, 0.25, 1.0])
    assert split_prompt(10, 3, lambda: next(gaps)) == ((0.0, 4), (0.5, 3), (0.75, 3))
    assert split_prompt(2, 5, lambda: 1.0) == ((0.0, 1), (1.0, 1))  # never an empty piece


def test_generator_adds_pieces_and_tasks_without_changing_the_rest() -> None:
    plain = SyntheticConfig(num_requests=300)
    rich = plain.model_copy(
        update={
            "streaming": StreamingConfig(chunks=4, gap_s=0.5),
            "tasks": [TaskMixConfig(name="code", weight=3), TaskMixConfig(name="math")],
            "difficulty": True,
        }
    )
    a, b = list(generate(plain, 2)), list(generate(rich, 2))
    assert [(r.arrival_s, r.prompt_tokens, r.block_hashes) for r in a] == [
        (r.arrival_s, r.prompt_tokens, r.block_hashes) for r in b
    ]  # common random numbers: the new fields come from their own streams
    for r in b:
        assert sum(t for _, t in r.prompt_chunks) == r.prompt_tokens
        offs = [o for o, _ in r.prompt_chunks]
        assert offs[0] == 0.0 and offs == sorted(offs)
        assert r.task_class in ("code", "math") and 0 <= r.difficulty <= 1  # type: ignore[operator]
    share = sum(r.task_class == "code" for r in b) / len(b)
    assert 0.65 < share < 0.85  # weight 3 of 4


def test_cli_simulates_a_streamed_task_trace_and_rejects_a_bad_line(tmp_path: Path, cli) -> None:
    good = {**BASE, "prompt_chunks": [[0, 60], [0.5, 40]], "task_class": "code", "difficulty": 0.3}
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": 1, "arrival_s": 0.1}) + "\n")
    code, out, err = cli("simulate", "--trace", str(p), "--instances", "1")
    assert code == 0, err
    assert "2/2" in out
    bad = {**good, "id": 2, "arrival_s": 0.2, "prompt_chunks": [[0, 60], [0.5, 30]]}
    p.write_text(p.read_text() + json.dumps(bad) + "\n")
    code, _out, err = cli("simulate", "--trace", str(p), "--instances", "1")
    assert code == 2 and err.strip().count("\n") == 0
    assert f"{p}:3: prompt_chunks: pieces sum to 90 tokens" in err

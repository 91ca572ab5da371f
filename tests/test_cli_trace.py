"""``fleetsched trace info|synth|convert`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest

from fleetsched.cli.app import main
from fleetsched.core.config import (
    ArrivalConfig,
    LengthConfig,
    SessionConfig,
    SyntheticConfig,
    TenantConfig,
)
from fleetsched.workload import generate, load_trace, read_jsonl, trace_stats

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces"
MOONCAKE = TRACES / "mooncake_fast25" / "conversation_trace.jsonl"
AZURE = TRACES / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv"
needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="no public traces")


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """Run ``fleetsched *args`` in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fleetsched", *args])
    monkeypatch.setenv("COLUMNS", "120")
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@needs_traces
def test_info_json_matches_trace_stats(monkeypatch, capsys) -> None:
    code, out, _ = run(monkeypatch, capsys, "trace", "info", str(MOONCAKE), "--json")
    assert code == 0
    got = json.loads(out)
    assert got["file"] == str(MOONCAKE)
    assert got["rows"] == 12_031
    expected = json.loads(json.dumps(trace_stats(load_trace(MOONCAKE))))
    assert {k: v for k, v in got.items() if k != "file"} == expected


@needs_traces
def test_info_table(monkeypatch, capsys) -> None:
    code, out, err = run(monkeypatch, capsys, "trace", "info", str(AZURE), "--format", "azure")
    assert code == 0 and err == ""
    assert "8,819" in out and "prompt tokens" in out and "output tokens" in out
    assert "p99" in out and "mean rate" in out


def test_synth_writes_the_requested_workload(monkeypatch, capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "chat.jsonl"
    args = [
        "trace",
        "synth",
        "--requests",
        "400",
        "--rate",
        "24",  # requests/s: 8 sessions/s of 3 turns on average
        "--arrival",
        "gamma",
        "--cv",
        "2",
        "--prompt-mean",
        "300",
        "--output-mean",
        "50",
        "--turns",
        "3",
        "--system-prompt-tokens",
        "64",
        "--tenants",
        "2",
        "--seed",
        "7",
        "-o",
        str(out_file),
    ]
    code, _, err = run(monkeypatch, capsys, *args)
    assert code == 0
    assert f"wrote 400 requests to {out_file}" in err
    expected = SyntheticConfig(
        num_requests=400,
        arrival=ArrivalConfig(kind="gamma", rate=8, cv=2),
        prompt=LengthConfig(kind="lognormal", mean=300, sigma=0.8),
        output=LengthConfig(kind="lognormal", mean=50, sigma=0.8),
        sessions=SessionConfig(turns_mean=3),
        system_prompt_tokens=64,
        tenants=[TenantConfig(name="tenant0"), TenantConfig(name="tenant1")],
    )
    assert list(read_jsonl(out_file)) == list(generate(expected, 7))
    first = out_file.read_bytes()
    run(monkeypatch, capsys, *args)
    assert out_file.read_bytes() == first  # deterministic


def test_synth_from_config_with_override(monkeypatch, capsys, tmp_path: Path) -> None:
    cfg = tmp_path / "synthetic.yaml"
    cfg.write_text(
        "synthetic:\n"
        "  num_requests: 50\n"
        "  arrival: {kind: bursty, rate: 10}\n"
        "  prompt: {kind: uniform, low: 10, high: 20}\n"
        "  output: {kind: fixed, value: 4}\n"
        "  tenants:\n"
        "    - {name: a, weight: 2, priority: 1, slo_class: fast}\n"
        "    - {name: b}\n"
    )
    out_file = tmp_path / "o.jsonl"
    code, _, _ = run(
        monkeypatch,
        capsys,
        "trace",
        "synth",
        "--config",
        str(cfg),
        "--requests",
        "30",
        "-o",
        str(out_file),
    )
    assert code == 0
    reqs = list(read_jsonl(out_file))
    assert len(reqs) == 30
    assert all(10 <= r.prompt_tokens <= 20 and r.output_tokens == 4 for r in reqs)
    assert {r.tenant for r in reqs} <= {"a", "b"}
    assert all((r.priority, r.slo_class) == (1, "fast") for r in reqs if r.tenant == "a")


def test_synth_config_errors_name_file_line_and_field(monkeypatch, capsys, tmp_path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("num_requests: 5\narrival:\n  kind: poisson\n  rate: -3\n")
    code, out, err = run(
        monkeypatch, capsys, "trace", "synth", "-c", str(cfg), "-o", str(tmp_path / "o.jsonl")
    )
    assert code == 2 and out == ""
    assert err.strip() == f"error: {cfg}:4: arrival.rate: Input should be greater than 0"
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "error: --rate: Input should be greater than 0 (arrival.rate)"),
        (
            ["--arrival", "weibull"],
            "error: --arrival: Input should be 'poisson', 'gamma' or 'bursty' (arrival.kind)",
        ),
        (["--tenants", "0"], "error: --tenants must be at least 1, got 0"),
        (["--seed", "-1"], "error: --seed must be >= 0, got -1"),
    ],
)
def test_synth_bad_options(monkeypatch, capsys, tmp_path, args, message) -> None:
    code, _, err = run(
        monkeypatch, capsys, "trace", "synth", *args, "-o", str(tmp_path / "o.jsonl")
    )
    assert code == 2
    assert err.strip() == message


@needs_traces
def test_convert_window_and_rate_scale(monkeypatch, capsys, tmp_path: Path) -> None:
    out_file = tmp_path / "az.jsonl"
    code, _, _ = run(
        monkeypatch,
        capsys,
        "trace",
        "convert",
        str(AZURE),
        "--start",
        "600",
        "--end",
        "1200",
        "--rate-scale",
        "2",
        "-o",
        str(out_file),
    )
    assert code == 0
    # Independent count from the Vidur copy of the same trace (arrival seconds).
    vidur = TRACES / "vidur" / "processed_traces" / "splitwise_code.csv"
    times = [float(line.split(",")[0]) for line in vidur.read_text().splitlines()[1:]]
    window = [t for t in times if 600 <= t < 1200]
    reqs = list(read_jsonl(out_file))
    assert len(reqs) == len(window) > 0
    assert [r.id for r in reqs] == list(range(len(reqs)))
    assert reqs[0].arrival_s == pytest.approx((window[0] - 600) / 2, abs=1e-5)
    assert reqs[-1].arrival_s == pytest.approx((window[-1] - 600) / 2, abs=1e-5)


@needs_traces
def test_convert_mooncake_round_trips_through_native(monkeypatch, capsys, tmp_path) -> None:
    out_file = tmp_path / "mc.jsonl"
    code, _, _ = run(
        monkeypatch,
        capsys,
        "trace",
        "convert",
        str(MOONCAKE),
        "--first-n",
        "500",
        "-o",
        str(out_file),
    )
    assert code == 0
    assert list(read_jsonl(out_file)) == list(islice(load_trace(MOONCAKE), 500))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("", ":1: empty file"),
        (
            '{"id": 0, "arrival_s": 0, "prompt_tokens": 3, "output_tokens": 1}\n{"id": 1,\n',
            ":2: bad JSON: Expecting property name enclosed in double quotes",
        ),
    ],
)
@pytest.mark.parametrize("command", ["info", "convert"])
def test_bad_input_one_line_exit_2(monkeypatch, capsys, tmp_path, content, problem, command):
    src = tmp_path / "in.jsonl"
    if content is not None:
        src.write_text(content)
    extra = ["-o", str(tmp_path / "out.jsonl")] if command == "convert" else []
    code, _out, err = run(monkeypatch, capsys, "trace", command, str(src), *extra)
    assert code == 2
    assert err.startswith(f"error: {src}")
    assert problem in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", ["info", "synth", "convert"])
def test_help_has_an_example(monkeypatch, capsys, command) -> None:
    code, out, _ = run(monkeypatch, capsys, "trace", command, "--help")
    assert code == 0
    assert "Example: fleetsched trace " + command in " ".join(out.split())


def test_real_executable_reports_bad_input_on_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "fleetsched"
    if not exe.exists():
        pytest.skip("fleetsched console script not installed")
    bad = tmp_path / "t.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,x,1\n")
    proc = subprocess.run(
        [str(exe), "trace", "info", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == (
        f"error: {bad}:2: ContextTokens: expected an integer token count, got 'x'"
    )

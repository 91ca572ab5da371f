"""Issue 11: validated policy parameters, errors before work, readable tables, discoverable
choices. Each test runs ``fleetsched`` in-process through its entry point (the ``cli``
fixture) and checks the exit code and the exact one-line message, or the behaviour asked for."""

from __future__ import annotations

import csv
import inspect
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console

from fleetsched.cli.options import engine_flags, resolve_scenario
from fleetsched.cli.reference import scenario_reference
from fleetsched.core.config import load_scenario, parse_scenario
from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.metrics.io import COLUMNS
from fleetsched.metrics.table import COMPARE_COLUMNS, compare_table
from fleetsched.perf import GPUS, MODELS, get_gpu, get_model
from fleetsched.perf.roofline import default_activation_reserve_bytes, kv_capacity_blocks
from fleetsched.policies.engine import ADMISSION, ORDERING, PREEMPTION
from fleetsched.policies.params import CONTEXT_ARGS, params_model, policy_params
from fleetsched.policies.routing import ROUTERS, make_router
from fleetsched.sim.check import POLICY_KINDS, role_routers, scenario_problems
from fleetsched.sim.run import simulate
from fleetsched.workload import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
SYN = "workload: {synthetic: {num_requests: 50}}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------ 1. policy parameters checked


@pytest.mark.parametrize("registry", [ROUTERS, ADMISSION, ORDERING, PREEMPTION])
def test_parameter_schemas_are_the_factory_signatures(registry) -> None:
    for name, factory in registry.items():
        sig = inspect.signature(factory)
        expected = {
            k: p.default
            for k, p in sig.parameters.items()
            if k not in CONTEXT_ARGS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        fields = params_model(factory).model_fields
        assert list(fields) == list(expected), name
        for k, default in expected.items():
            assert fields[k].default == default, (name, k)


def test_parameters_are_converted_to_their_declared_types() -> None:
    r = make_router("cache_aware", {"cache_threshold": "0.25", "balance_abs_threshold": 8.0})
    assert r.cache_threshold == 0.25 and isinstance(r.cache_threshold, float)
    assert r.balance_abs_threshold == 8 and isinstance(r.balance_abs_threshold, int)


def test_bad_parameter_type_names_file_line_and_field(cli, tmp_path: Path) -> None:
    s = write(
        tmp_path / "s.yaml",
        SYN + "policies:\n  router: {name: cache_aware, params: {cache_threshold: high}}\n",
    )
    code, out, err = cli("simulate", "--scenario", str(s))
    assert code == 2 and out == ""
    assert one_line(err) == (
        f"error: {s}:3: policies.router.params.cache_threshold: Input should be a valid "
        "number, unable to parse string as a number\n"
    )


def test_bad_weight_of_prefix_load(cli, tmp_path: Path) -> None:
    s = write(
        tmp_path / "s.yaml", SYN + "policies:\n  router:\n    name: prefix_load\n    params:\n"
        "      prefix_weight: x\n"
    )  # fmt: skip
    code, _, err = cli("simulate", "-s", str(s))
    assert (code, one_line(err)) == (
        2,
        f"error: {s}:6: policies.router.params.prefix_weight: Input should be a valid number, "
        "unable to parse string as a number\n",
    )


def test_misspelt_parameter_lists_the_valid_ones(cli, tmp_path: Path) -> None:
    s = write(
        tmp_path / "s.yaml",
        SYN + "policies:\n  router:\n    name: cache_aware\n    params:\n"
        "      cache_treshold: 0.3\n",
    )
    code, _, err = cli("simulate", "-s", str(s))
    valid = ", ".join(p.name for p in policy_params(ROUTERS["cache_aware"]))
    assert (code, one_line(err)) == (
        2,
        f"error: {s}:6: policies.router.params.cache_treshold: unknown parameter; did you mean "
        f"'cache_threshold'? (valid: {valid})\n",
    )


@pytest.mark.parametrize(
    ("policies", "line", "message"),
    [
        (
            "  router: {name: cache_aware, params: {load: foo}}\n",
            3,
            "policies.router.params: cache_aware: load must be 'router' or 'views', got 'foo'",
        ),
        (
            "  ordering: {name: sjf, params: {predictor: quantile, q: 3}}\n",
            3,
            "policies.ordering.params: q must be in (0, 1], got 3.0",
        ),
        (
            "  router: {name: nope}\n",
            3,
            f"policies.router.name: unknown router 'nope' (known: {', '.join(sorted(ROUTERS))})",
        ),
        (
            "  preemption: {name: newest, params: {x: 1}}\n",
            3,
            "policies.preemption.params.x: unknown parameter; (valid: none)",
        ),
    ],
)
def test_policy_problems_at_load(cli, tmp_path: Path, policies, line, message) -> None:
    s = write(tmp_path / "s.yaml", SYN + "policies:\n" + policies)
    code, _, err = cli("simulate", "-s", str(s))
    assert (code, one_line(err)) == (2, f"error: {s}:{line}: {message}\n")


def test_unknown_gpu_and_a_model_that_does_not_fit_name_their_field(cli, tmp_path) -> None:
    s = write(tmp_path / "g.yaml", SYN + "cluster:\n  - name: big\n    gpu: B999\n")
    code, _, err = cli("simulate", "-s", str(s))
    assert (code, one_line(err)) == (
        2,
        f"error: {s}:4: cluster.0.gpu: unknown GPU 'B999'; known GPUs: {', '.join(GPUS)}\n",
    )
    s = write(tmp_path / "f.yaml", SYN + "cluster:\n  - {gpu: A10G, model: Llama-3.1-70B}\n")
    code, _, err = cli("simulate", "-s", str(s))
    assert code == 2
    assert one_line(err).startswith(
        f"error: {s}:3: cluster.0.tp: Llama-3.1-70B does not fit on A10G with tp=1: "
    )


def test_load_scenario_with_a_check_names_the_line(tmp_path: Path) -> None:
    s = write(tmp_path / "s.yaml", SYN + "cluster:\n  - {tp: 3}\n")
    load_scenario(s)  # the schema alone accepts it
    with pytest.raises(InputError) as e:
        load_scenario(s, check=scenario_problems)
    assert str(e.value) == (
        f"{s}:3: cluster.0.tp: tp=3 does not divide the 32 attention heads of Llama-3.1-8B"
    )


# ------------------------------------------------------ 2. output paths checked before work


def test_unwritable_outputs_fail_before_the_run(cli, tmp_path: Path) -> None:
    f = write(tmp_path / "file", "")
    for flag in ("--summary-json", "--requests-out"):
        code, out, err = cli("simulate", flag, str(f / "out.json"))
        assert code == 2 and out == ""  # nothing ran: not even the title was printed
        assert one_line(err) == (
            f"error: {flag}: cannot write {f}/out.json: {f} is not a directory\n"
        )
    code, out, err = cli("compare", "--summary-json", str(tmp_path))
    assert (code, out, one_line(err)) == (
        2,
        "",
        f"error: --summary-json: cannot write {tmp_path}: Is a directory\n",
    )
    code, _, err = cli("trace", "synth", "-o", str(f / "t.jsonl"))
    assert (code, one_line(err)) == (
        2,
        f"error: --out: cannot write {f}/t.jsonl: {f} is not a directory\n",
    )


def test_parquet_without_pyarrow_fails_before_the_run(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    code, out, err = cli("simulate", "--requests-out", str(tmp_path / "r.parquet"))
    assert (code, out, one_line(err)) == (
        2,
        "",
        "error: --requests-out: Parquet needs pyarrow: pip install 'fleetsched[parquet]'\n",
    )
    assert not (tmp_path / "r.parquet").exists()


def test_output_check_creates_parents_and_leaves_no_file(tmp_path: Path) -> None:
    from fleetsched.cli.options import check_output

    target = tmp_path / "a" / "b" / "s.json"
    check_output(target, "--summary-json")
    assert target.parent.is_dir() and not target.exists()


# ------------------------------------------------------------------ 3. text printed as is


def test_error_text_is_printed_literally(cli, tmp_path: Path) -> None:
    s = write(tmp_path / "run[bold].yaml", SYN + "seed: [1]\n")
    code, _, err = cli("simulate", "-s", str(s))
    assert (code, one_line(err)) == (2, f"error: {s}:2: seed: Input should be a valid integer\n")
    code, _, err = cli("simulate", "--router", "[red]x[/red]")
    assert code == 2 and err.startswith("error: --router: unknown router '[red]x[/red]' (known:")


# ------------------------------------------------------- 4. a trace is read whole up front


def test_bad_last_row_fails_before_the_run(cli, tmp_path: Path) -> None:
    t = write(
        tmp_path / "t.jsonl",
        "".join(
            f'{{"id":{i},"arrival_s":{i}.0,"prompt_tokens":10,"output_tokens":5}}\n'
            for i in range(2)
        )
        + '{"id":2,"arrival_s":2.0,"prompt_tokens":"ten","output_tokens":5}\n',
    )
    js = tmp_path / "s.json"
    code, out, err = cli("simulate", "--trace", str(t), "--summary-json", str(js))
    assert (code, out) == (2, "")  # the title comes after the check: the run never started
    assert one_line(err) == f"error: {t}:3: prompt_tokens: expected an integer, got 'ten'\n"
    assert not js.exists()


# ------------------------------------------------ 5. rejected requests, empty workloads


def test_rejected_requests_are_shown_and_counted(cli, tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    write_jsonl([Request(0, 0.0, 10, 5), Request(1, 0.5, 200, 10)], t)
    s = write(
        tmp_path / "s.yaml",
        f"workload: {{trace: {t}}}\ncluster: [{{engine: {{num_gpu_blocks: 4}}}}]\n",
    )  # 4 blocks x 16 tokens: the 210-token request can never fit
    js = tmp_path / "s.json"
    code, out, err = cli("simulate", "-s", str(s), "--summary-json", str(js))
    assert code == 0, err
    assert re.search(r"rejected \(can never run\) +│ +1 │", out), out
    assert re.search(r"requests \(completed/all\) +│ +1/2 │", out), out
    assert json.loads(js.read_text())["rejected"] == 1


def test_empty_workload_is_an_error(cli, tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    write_jsonl([Request(0, 0.0, 10, 5), Request(1, 2.0, 10, 5)], t)
    s = write(tmp_path / "s.yaml", f"workload: {{trace: {t}, transforms: {{start_s: 100}}}}\n")
    code, out, err = cli("simulate", "-s", str(s))
    assert (code, out, one_line(err)) == (
        2,
        "",
        "error: workload.transforms: no requests left to simulate: start_s=100.0 keeps none "
        "of the trace's requests (arrivals read: 0.0 s to 2.0 s)\n",
    )
    s = write(
        tmp_path / "syn.yaml",
        "workload: {synthetic: {num_requests: 5}, transforms: {start_s: 1.0e6}}\n",
    )
    code, out, err = cli("simulate", "-s", str(s))
    assert code == 2 and "nan" not in out
    assert one_line(err) == "error: workload.transforms: no requests left to simulate\n"
    code, _, err = cli("trace", "convert", str(t), "--start", "100", "-o", str(tmp_path / "o"))
    assert (code, one_line(err)) == (
        2,
        f"error: {t}: --start 100 keeps none of its requests; nothing written\n",
    )
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------ 6. roles and tp against the node


def test_roles_need_a_router_that_routes_by_role(cli, tmp_path: Path) -> None:
    s = write(
        tmp_path / "pd.yaml",
        SYN + "cluster:\n  - {name: p, role: prefill}\n  - {name: d, role: decode}\n"
        "policies:\n  router: {name: least_requests}\n",
    )
    code, _, err = cli("simulate", "-s", str(s))
    assert role_routers() == ["pd_disagg"]
    assert (code, one_line(err)) == (
        2,
        f"error: {s}:6: policies.router.name: the cluster has prefill/decode roles but router "
        "'least_requests' does not route by role (routers that do: pd_disagg)\n",
    )
    ok = parse_scenario(
        SYN + "cluster: [{role: prefill}, {role: decode}]\npolicies: {router: {name: pd_disagg}}"
    )
    assert scenario_problems(ok) == []
    only = parse_scenario(SYN + "cluster: [{role: prefill}]\npolicies: {router: {name: pd_disagg}}")
    assert scenario_problems(only) == [
        (("cluster",), "prefill instances need a decode or mixed instance group")
    ]


def test_tp_above_the_gpus_of_a_node_is_refused(cli) -> None:
    code, out, err = cli("simulate", "--tp", "16")
    assert (code, out, one_line(err)) == (
        2,
        "",
        "error: --tp: tp=16 needs more GPUs than one H100-SXM node has (8)\n",
    )
    assert all(g.gpus_per_node <= 8 for g in GPUS.values())


# ------------------------------------------------------------------- 7. readable compare


def _summary() -> dict:
    """Wide but plausible values: 1.2 s median and 100 s p99 TTFT, 17 min p99 E2E."""
    return {
        "ttft_s": {"p50": 1.234, "p99": 99.999}, "tpot_s": {"p50": 0.0999},
        "e2e_s": {"p99": 999.999}, "goodput_req_s": 123.45, "slo_attainment": 1.0,
        "prefix_hit_rate": 0.999, "preemptions": 99_999, "requests": 1,
    }  # fmt: skip


@pytest.mark.parametrize("width", [80, 60])
def test_compare_table_fits_the_width_and_never_cuts_cells(width: int) -> None:
    summaries = {name: _summary() for name in ROUTERS}  # every router name, wide values
    console = Console(width=width, record=True, color_system=None)
    console.print(compare_table(summaries, title="t"))
    text = console.export_text()
    assert all(len(line) <= width for line in text.splitlines())
    assert "…" not in text
    if width == 80:  # every name and value whole on one line
        for cell in ("session_affinity", "1,234", "99,999", "99.9", "999,999", "123.45"):
            assert re.search(rf"(^| ){re.escape(cell)}( |$)", text, re.M), cell
    assert "times in ms" in text


def test_compare_is_readable_when_piped(cli, tmp_path: Path) -> None:
    js = tmp_path / "c.json"
    args = ["compare", "--requests", "150", "--jobs", "1", "--summary-json", str(js)]
    code, out, err = cli(*args, "--columns", "ttft_p50,rejected,tok_s", columns=80)
    assert code == 0, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "…" not in out and "times in ms" in out
    top, bottom = [ln for ln in out.split("────")[0].splitlines() if ln.strip()][-2:]
    assert top.split() == ["TTFT", "re-", "output"] and bottom.split() == [
        "router", "p50", "ject", "tok/s"
    ]  # fmt: skip
    assert set(json.loads(js.read_text())) == {"round_robin", "least_requests"}
    code, out, err = cli("compare", "--columns", "ttft_p50,nope")
    assert (code, out, one_line(err)) == (
        2,
        "",
        f"error: --columns: unknown column 'nope' (known: {', '.join(COMPARE_COLUMNS)})\n",
    )


# ----------------------------------------------------------------- 8. flags that behave


def test_rate_scale_multiplies_the_scenarios(tmp_path: Path) -> None:
    s = write(tmp_path / "s.yaml", SYN[:-2] + ", transforms: {rate_scale: 2.0}}\n")
    assert resolve_scenario(s).workload.transforms.rate_scale == 2.0
    assert resolve_scenario(s, rate_scale=3.0).workload.transforms.rate_scale == 6.0


def test_quiet_prints_nothing(cli, tmp_path: Path) -> None:
    js = tmp_path / "s.json"
    assert cli("simulate", "-q", "--requests", "50") == (0, "", "")
    assert cli("simulate", "-q", "--requests", "50", "--summary-json", str(js)) == (0, "", "")
    assert json.loads(js.read_text())["requests"] == 50


def test_short_help_and_version(cli) -> None:
    for args in (["-h"], ["simulate", "-h"], ["trace", "synth", "-h"], ["list", "-h"]):
        code, out, _ = cli(*args)
        assert code == 0 and "Usage" in out, args
    assert cli("--version") == (0, f"fleetsched {version('fleetsched')}\n", "")


# ---------------------------------------------------------------- 9. discoverable choices


def test_list_gpus_and_models_read_the_catalogs(cli) -> None:
    code, out, _ = cli("list", "gpus", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and list(rows) == list(GPUS)
    h100 = rows["H100-SXM"]
    assert (h100["memory_gib"], h100["mem_bw_tb_s"], h100["gpus_per_node"]) == (80, 3.35, 8)
    code, out, _ = cli("list", "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list(MODELS)
    assert (rows["Llama-3.1-8B"]["layers"], rows["Llama-3.1-8B"]["kv_heads"]) == (32, 8)
    for what, names in (("gpus", GPUS), ("models", MODELS)):
        code, out, _ = cli("list", what, columns=120)
        assert code == 0 and all(n in out for n in names), out


def test_list_policies_shows_every_parameter_default_and_source(cli) -> None:
    code, out, _ = cli("list", "policies", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["kind"], r["name"]) for r in rows] == [
        (k, n) for k, (reg, _) in POLICY_KINDS.items() for n in reg
    ]
    for r in rows:
        factory = POLICY_KINDS[r["kind"]][0][r["name"]]
        assert [p["name"] for p in r["params"]] == [p.name for p in policy_params(factory)]
        assert r["about"], r["name"]
    vtc = next(r for r in rows if r["name"] == "vtc")
    assert "OSDI 2024" in vtc["about"]
    assert {p["name"]: p["default"] for p in vtc["params"]} == {
        "w_in": 1.0,
        "w_out": 2.0,
        "weights": None,
    }
    code, out, _ = cli("list", "policies", "router", "cache_aware", columns=120)
    assert code == 0 and "sgl-router" in out and "cache_threshold: float = 0.3" in out
    code, _, err = cli("list", "policies", "router", "nope")
    assert (code, one_line(err)) == (
        2,
        f"error: unknown router 'nope' (known: {', '.join(ROUTERS)})\n",
    )


def test_help_names_the_choices(cli) -> None:
    code, out, _ = cli("simulate", "--help", columns=400)
    assert code == 0
    for names in (ROUTERS, GPUS, MODELS, ORDERING, ADMISSION, PREEMPTION):
        assert all(n in out for n in names)


# ------------------------------------------------------------------ 10. engine knobs


def test_engine_flags_set_every_group(tmp_path: Path) -> None:
    s = write(tmp_path / "s.yaml", SYN + "cluster: [{name: a}, {name: b, gpu: H200}]\n")
    flags = engine_flags(7, 4096, 0.8, 32, False, "swap")
    sc = resolve_scenario(s, engine=flags)
    for g in sc.cluster:
        e = g.engine
        assert (e.max_num_seqs, e.max_num_batched_tokens, e.gpu_memory_utilization) == (
            7,
            4096,
            0.8,
        )
        assert (e.block_tokens, e.enable_prefix_caching, e.preemption_mode) == (32, False, "swap")


def test_simulate_title_kv_capacity_and_engine_flags(cli, tmp_path: Path) -> None:
    js = tmp_path / "s.json"
    code, out, err = cli(
        "simulate", "--requests", "300", "--block-size", "32", "--no-prefix-caching",
        "--summary-json", str(js),
    )  # fmt: skip
    assert code == 0, err
    gpu, model = get_gpu("H100-SXM"), get_model("Llama-3.1-8B")
    blocks = kv_capacity_blocks(
        gpu, model, 1, 0.9, 32, default_activation_reserve_bytes(model, 1, 8192)
    )
    assert out.splitlines()[:3] == [
        "default-chat-4xH100: 4 × H100-SXM, Llama-3.1-8B, tp 1",
        "router round_robin, admission aggressive, ordering fcfs, preemption newest",
        f"KV cache per instance: {blocks:,} blocks × 32 tokens = {blocks * 32:,} tokens",
    ]
    # The default scenario shares system prompts and chat history; without prefix caching
    # nothing is reused.
    assert json.loads(js.read_text())["prefix_hit_rate"] == 0.0
    code, _, err = cli("simulate", "--max-num-seqs", "0")
    assert (code, one_line(err)) == (
        2,
        "error: --max-num-seqs: Input should be greater than or equal to 1\n",
    )


def test_compare_varies_engine_policies(cli, tmp_path: Path) -> None:
    js = tmp_path / "c.json"
    code, out, err = cli(
        "compare", "--vary", "ordering=fcfs,priority", "--requests", "150", "--jobs", "1",
        "--summary-json", str(js), "--max-num-seqs", "8",
    )  # fmt: skip
    assert code == 0, err
    assert list(json.loads(js.read_text())) == ["fcfs", "priority"]
    assert " ordering " in out and "150 requests, each ordering in turn" in out
    code, _, err = cli("compare", "--vary", "ordering=fcfs,bogus")
    assert (code, one_line(err)) == (
        2,
        "error: --vary ordering=bogus: unknown ordering policy 'bogus' "
        f"(known: {', '.join(sorted(ORDERING))})\n",
    )
    code, _, err = cli("compare", "--routers", "a", "--vary", "b=1")
    assert (code, one_line(err)) == (
        2,
        "error: give --routers or --vary, not both (--vary router=a,b is --routers)\n",
    )


# -------------------------------------------------- 11. generated arrivals, synth --rate


def test_generated_rate_for_length_only_traces(cli, tmp_path: Path) -> None:
    t = tmp_path / "lengths.csv"
    rows = "".join(f"{100 + i},{10 + i % 7},{110 + i + i % 7},1.0\n" for i in range(200))
    write(t, "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n" + rows)
    out_csv = tmp_path / "r.csv"
    code, out, err = cli(
        "simulate", "--trace", str(t), "--generated-rate", "20", "--requests-out", str(out_csv)
    )
    assert code == 0, err
    assert (
        "arrivals generated: the trace has no timestamps, so requests arrive as a Poisson "
        "process at 20 req/s (--generated-rate)"
    ) in " ".join(out.split())
    with out_csv.open() as f:
        last = max(float(r["arrival_s"]) for r in csv.DictReader(f))
    # 199 gaps of mean 1/20 s: 9.95 s, standard deviation 0.7 s.
    assert 7.0 < last < 13.0


def test_synth_rate_is_requests_per_second(cli, tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    args = ["trace", "synth", "--requests", "3000", "--rate", "6", "--turns", "3", "-o", str(out)]
    assert cli(*args)[0] == 0
    _, text, _ = cli("trace", "info", str(out), "--json")
    rate = json.loads(text)["mean_rate"]
    assert 6 * 0.85 < rate < 6 * 1.15, rate  # 1,000 sessions of 3 turns on average


# ------------------------------------------------------------------------------ 12. docs


def test_scenario_reference_page_is_current() -> None:
    page = (ROOT / "docs" / "scenario.md").read_text()
    assert page == scenario_reference(), "docs/scenario.md is stale: run `make docs`"
    for key in ("max_num_seqs", "view_refresh_s", "turns_mean", "cache_threshold", "rate_scale"):
        assert f"`{key}`" in page


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k == "deadlines":
            out |= _keys(v, prefix + k + ".")
    return out


def test_every_summary_key_and_csv_column_is_documented() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    sc = parse_scenario("workload: {synthetic: {num_requests: 20}}\n")
    summary = simulate(sc).summary
    for key in sorted(_keys(summary)):
        name = key.rsplit(".", 1)[-1]
        assert f"`{name}`" in doc, key
    for column in COLUMNS:
        assert f"`{column}`" in doc, column


# ----------------------------------------------------------- 13. bench, licence, packaging


def test_make_bench_skips_the_million_unless_full(monkeypatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    calls: list[list[str]] = []

    def fake_run(args, **kw):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(run_all.subprocess, "run", fake_run)
    assert run_all.main([]) == 0
    assert not any("--million" in c for c in calls) and len(calls) >= 2
    calls.clear()
    assert run_all.main(["--full"]) == 0
    assert calls[0][-1] == "--million" and "bench_sim.py" in calls[0][-2]
    make = (ROOT / "Makefile").read_text()
    assert "bench-full: $(DEVSTAMP)\n\t$(BIN)/python benchmarks/run_all.py --full" in make


def test_licence_is_an_spdx_expression() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert all((ROOT / f).is_file() for f in meta["project"]["license-files"])
    assert "setuptools>=77" in meta["build-system"]["requires"]  # first with PEP 639
    assert not any("License ::" in c for c in meta["project"].get("classifiers", []))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["simulate", "--preemption-mode", "bogus"],
            "error: Invalid value for '--preemption-mode': Value error, 'bogus' is not one of "
            "'recompute', 'swap'. (see fleetsched simulate -h)",
        ),
        (
            ["simulate", "--instances", "x"],
            "error: Invalid value for '--instances': Input should be a valid integer, unable to "
            "parse string as an integer (see fleetsched simulate -h)",
        ),
        (["bogus"], "error: No such command 'bogus'. (see fleetsched -h)"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    """A bad flag value or command is one line on stderr, exit 2, as fleetsched's own errors
    are (typer's boxed multi-line usage message before)."""
    code, out, err = cli(*args)
    assert (code, out, err.strip()) == (2, "", message)


def test_json_error_positions_read_once(cli, tmp_path: Path) -> None:
    """json's "Invalid control character at" is not followed by a second "at"."""
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"a": "x\ty"}\n')
    code, _, err = cli("simulate", "--trace", str(trace))
    assert code == 2
    assert " at at " not in err and "bad JSON: Invalid control character at column" in err

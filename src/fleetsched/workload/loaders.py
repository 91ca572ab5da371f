"""One entry point for every trace format: :func:`load_trace` and :func:`detect_format`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from fleetsched.core.request import Request
from fleetsched.errors import InputError, at_line
from fleetsched.workload import azure, burstgpt, mooncake, native, vidur
from fleetsched.workload._common import PathLike, csv_names, lines, open_text

#: Format name -> loader. Each loader takes the path plus ``generated_rate`` and ``seed``.
LOADERS: dict[str, Callable[..., Iterator[Request]]] = {
    "native": lambda p, generated_rate, seed: native.read_jsonl(p),
    "azure": lambda p, generated_rate, seed: azure.load_azure(p),
    "mooncake": lambda p, generated_rate, seed: mooncake.load_mooncake(p),
    "vidur": lambda p, generated_rate, seed: vidur.load_vidur(
        p, generated_rate=generated_rate, seed=seed
    ),
    "burstgpt": lambda p, generated_rate, seed: burstgpt.load_burstgpt(p),
}
#: Workflow traces (``workload/workflows.py``) are not request streams: one workflow per line.
WORKFLOW_FORMAT = "workflow"
FORMATS = ("auto", *LOADERS, WORKFLOW_FORMAT)

_KNOWN_HEADERS = (
    f"azure: {','.join(azure.COLUMNS)}; "
    f"vidur: {','.join(vidur.COLUMNS)} or {','.join(vidur.LENGTH_HEADER)}; "
    f"burstgpt: {','.join(burstgpt.COLUMNS)}"
)


def _first_line(p: Path) -> tuple[int, str]:
    with open_text(p) as f:
        for n, text in enumerate(lines(f, p), 1):
            if text.strip():
                return n, text
    raise InputError("empty file: no header and no requests", at_line(p, 1))


def detect_format(path: PathLike) -> str:
    """Name the format of a trace file from its content (first line), not its extension.

    Returns one of ``native``, ``mooncake``, ``workflow`` (JSON Lines) or ``azure``, ``vidur``,
    ``burstgpt`` (CSV). Raises :class:`InputError` if the file is missing, empty or unknown.
    """
    p = Path(path)
    n, first = _first_line(p)
    if first.lstrip().startswith("{"):
        obj = mooncake.parse_json_line(first, p, n)
        if "calls" in obj:
            return WORKFLOW_FORMAT
        if "arrival_s" in obj or "prompt_tokens" in obj:
            return "native"
        if "input_length" in obj or "hash_ids" in obj:
            return "mooncake"
        raise InputError(
            f"cannot tell the JSONL format from keys {', '.join(map(repr, obj)) or '(none)'}: "
            f"native lines have {', '.join(native.REQUIRED_KEYS)}; Mooncake lines have "
            f"{', '.join(mooncake.REQUIRED_KEYS)}, hash_ids; workflow lines have id, arrival_s, "
            "calls",
            at_line(p, n),
        )
    names = set(csv_names(p))
    if "TIMESTAMP" in names or "ContextTokens" in names:
        return "azure"
    if "arrived_at" in names or "num_prefill_tokens" in names:
        return "vidur"
    if "Request tokens" in names or "Response tokens" in names:
        return "burstgpt"
    raise InputError(
        f"unknown trace format: header {first.strip()[:120]!r} matches no known format. "
        f"Known CSV headers are {_KNOWN_HEADERS}; JSON Lines files are native or Mooncake",
        at_line(p, n),
    )


def generates_arrivals(path: PathLike, format: str = "auto") -> bool:
    """Whether the trace has no timestamps, so :func:`load_trace` gives its requests Poisson
    arrivals at ``generated_rate`` (Vidur's length-only CSVs)."""
    p = Path(path)
    fmt = detect_format(p) if format.lower() == "auto" else format.lower()
    return fmt == "vidur" and "arrived_at" not in csv_names(p)


def load_trace(
    path: PathLike, format: str = "auto", *, generated_rate: float = 4.0, seed: int = 0
) -> Iterator[Request]:
    """Stream the requests of a trace file in arrival order.

    Foreign formats get ids 0..N-1 in file order; native JSONL keeps the ids it stores.

    ``format`` is ``auto`` (see :func:`detect_format`) or one of :data:`LOADERS`.
    ``generated_rate`` (req/s) and ``seed`` give Poisson arrivals to length-only traces (Vidur
    stats CSVs). The file and its header are checked now; rows are parsed lazily, and a bad
    row raises :class:`InputError` naming ``file:line`` when it is reached.
    """
    fmt = format.lower()
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == WORKFLOW_FORMAT:
        raise InputError(
            "this is a workflow trace (one agent workflow per line), not a request stream: "
            "simulate it as a scenario's workload.trace (or --trace), or read it with "
            "fleetsched.workload.read_workflows",
            str(path),
        )
    loader = LOADERS.get(fmt)
    if loader is None:
        raise InputError(f"unknown trace format {format!r}; choose one of {', '.join(FORMATS)}")
    return loader(Path(path), generated_rate, seed)

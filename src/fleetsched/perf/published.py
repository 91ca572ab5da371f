"""Published whole-request latencies of vLLM, and what the roofline gives for the same setup.

Each :class:`Published` entry is one figure from a public source (``source``, ``url``), with
the batch it measured, so :func:`modelled_s` can replay it with step times alone: a batch of
``batch`` requests with ``prompt`` tokens each, prefilled in one step, then decoding. Kinds:

- ``itl``: inter-token latency of ``batch`` decoding requests at context ``context``;
- ``e2e``: end-to-end latency of the whole batch (``output`` tokens each, the first from the
  prefill step, then ``output - 1`` decode steps at contexts ``prompt + 1 ..``);
- ``ttft``: the prefill step of ``prompts`` (a list of prompt lengths) -- published TTFTs also
  hold HTTP, tokenisation and queueing, which a step-time model leaves out.

``fleetsched perf published`` prints them; docs/perf.md discusses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.perf.hardware import get_gpu
from fleetsched.perf.models import get_model
from fleetsched.perf.roofline import RooflineModel


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    kind: str  #: "itl", "e2e" or "ttft"
    gpu: str
    model: str
    tp: int
    seconds: float  #: the published figure
    source: str
    url: str
    setup: str
    batch: int = 1
    prompt: int = 0
    output: int = 0
    context: int = 0
    prompts: tuple[int, ...] = ()


_CI = "https://buildkite.com/vllm/performance-benchmark/builds/9515"
_CI_SETUP = "vLLM CI latency test: batch 8, 32 prompt + 128 output tokens, mean end to end"
_LAMBDA = "https://github.com/LambdaLabsML/vllm-benchmark/tree/main/results/prompt_10"
_LAMBDA_ITL = (
    "vLLM 0.6.0 (Sep 2024), 10 ShareGPT prompts at once; ITL of the last request once the "
    "others finished (per token; outputs come in groups of 10 steps)"
)
_LAMBDA_TTFT = "vLLM 0.6.0 (Sep 2024), 10 ShareGPT prompts (1,369 tokens) at once; median TTFT"
#: The 10 ShareGPT prompts of the LambdaLabs runs (``input_lens`` in every result file).
_LAMBDA_PROMPTS = (13, 25, 27, 10, 329, 29, 399, 328, 4, 205)

PUBLISHED: tuple[Published, ...] = (
    Published(
        kind="e2e", gpu="H200", model="Llama-3.1-8B", tp=1, seconds=0.8334,
        source="vLLM CI", url=_CI, setup=_CI_SETUP, batch=8, prompt=32, output=128,
    ),
    Published(
        kind="e2e", gpu="H200", model="Llama-3.1-70B", tp=4, seconds=2.0775,
        source="vLLM CI", url=_CI, setup=_CI_SETUP, batch=8, prompt=32, output=128,
    ),
    Published(
        kind="e2e", gpu="H200", model="Mixtral-8x7B", tp=2, seconds=1.9174,
        source="vLLM CI", url=_CI, setup=_CI_SETUP, batch=8, prompt=32, output=128,
    ),
    Published(
        kind="itl", gpu="H100-SXM", model="Llama-3.1-8B", tp=1, seconds=7.05e-3,
        source="LambdaLabs vllm-benchmark (Llama-3-8B)", url=_LAMBDA, setup=_LAMBDA_ITL,
        context=615,
    ),
    Published(
        kind="itl", gpu="A100-80GB", model="Llama-3.1-8B", tp=1, seconds=11.4e-3,
        source="LambdaLabs vllm-benchmark (Llama-3-8B)", url=_LAMBDA, setup=_LAMBDA_ITL,
        context=655,
    ),
    Published(
        kind="itl", gpu="H100-SXM", model="Llama-3.1-70B", tp=4, seconds=17.0e-3,
        source="LambdaLabs vllm-benchmark (Llama-3-70B)", url=_LAMBDA, setup=_LAMBDA_ITL,
        context=730,
    ),
    Published(
        kind="itl", gpu="A100-80GB", model="Llama-3.1-70B", tp=2, seconds=48.8e-3,
        source="LambdaLabs vllm-benchmark (Llama-3-70B)", url=_LAMBDA,
        setup=_LAMBDA_ITL.replace("the last request", "the last two requests"),
        batch=2, context=505,
    ),
    Published(
        kind="itl", gpu="A100-40GB", model="Llama-3.1-8B", tp=1, seconds=1 / 75,
        source="J. Musgrave, vLLM sweep on A100",
        url="https://johnmusgrave.com/p/vllm-throughput-latency-sweep-on",
        setup="vllm bench serve, concurrency 1, 1,024 + 128 tokens: ~75 tokens/s decode",
        context=1088,
    ),
    *(
        Published(
            kind="ttft", gpu=gpu, model=model, tp=tp, seconds=s,
            source=f"LambdaLabs vllm-benchmark ({name})", url=_LAMBDA, setup=_LAMBDA_TTFT,
            prompts=_LAMBDA_PROMPTS,
        )
        for gpu, model, tp, s, name in (
            ("H100-SXM", "Llama-3.1-8B", 1, 62.2e-3, "Llama-3-8B"),
            ("A100-80GB", "Llama-3.1-8B", 1, 126.7e-3, "Llama-3-8B"),
            ("H100-SXM", "Llama-3.1-70B", 4, 140.6e-3, "Llama-3-70B"),
            ("A100-80GB", "Llama-3.1-70B", 2, 506.4e-3, "Llama-3-70B"),
        )
    ),
)  # fmt: skip


def modelled_s(entry: Published, **knobs: float | None) -> float:
    """What the roofline (calibrated, or with ``knobs``) gives for ``entry``'s setup."""
    m = RooflineModel(get_gpu(entry.gpu), get_model(entry.model), entry.tp, **knobs)
    if entry.kind == "itl":
        return m.step_time(0, 0.0, entry.batch, entry.batch * entry.context)
    if entry.kind == "ttft":
        pairs = sum(p * (p + 1) / 2 for p in entry.prompts)
        return m.step_time(sum(entry.prompts), pairs, 0, 0)
    b, p = entry.batch, entry.prompt
    total = m.step_time(b * p, b * p * (p + 1) / 2, 0, 0)
    return total + sum(m.step_time(0, 0.0, b, b * (p + i)) for i in range(1, entry.output))

"""Non-uniform per-head KV-cache compression, and the page layouts that hold it (Tangram).

Source: Kim, Kim, Kim and Choi, "Tangram: Unlocking Non-Uniform KV Cache Compression for
Efficient Multi-turn LLM Serving", arXiv:2606.06302 (v2, June 2026), and its code,
aiha-lab/TANGRAM commit 8e1cbfa (a vLLM fork). Non-uniform compression keeps a different share of
each KV head's tokens (``ratio`` is the mean share kept). The paper finds that serving stacks
built on identical per-head KV lengths lose most of the saving and add time: heterogeneity
"traps freed memory as page fragmentation, spends up to 25% of prefill time reclaiming scattered
pages, and skews GPU workloads that inflate decode latency by up to 1.7x". Its fix, which this
module calls the ``tangram`` layout: Budget Reservation (each head's post-compression footprint
is fixed when the request is scheduled: no reclaiming), Ragged Paging (heads with similar budgets
share independent page tables) and Ahead-of-Time load balancing (no skew, no re-planning).

How each layout is modelled (``KVCompression``), per token of context:

- memory: ``memory_fraction = min(1, ratio * over_allocation)`` of the uncompressed KV bytes. A
  page shared by several heads holds as many tokens as its most-retaining head keeps, so a layout
  over-allocates by ``mean over page groups of the group's max budget / mean budget``.
- decode attention reads (and computes on) the same ``memory_fraction``: the kernel's time per
  page group is that of its heaviest head (the paper's load skew).
- prefill: ``reclaim_fraction`` of a compute-bound prefill's time is spent reclaiming pages.

Defaults, from Tangram's retention profile of Llama-3.1-8B-Instruct shipped in its repository
(``tools/head_group_clustering/cluster_maps/ea/llama-3.1-8b-instruct/profile.npz``: per-head kept
share of the compressible tokens at base ratio 0.3, ExpectedAttention scorer, 28 SCBench samples of
14.6k-26.3k tokens; mean 0.0727 over 32 layers x 8 KV heads):

- ``paged``: the 8 KV heads of a layer share its pages (vLLM's block layout, one length per
  layer), the runtime compresses after prefill and reclaims pages: over-allocation 2.76 (mean
  over layers of the layer's max head budget, 0.2007, / 0.0727); reclaim 0.25, the paper's "up to
  25%". With vLLM's single block table for *all* layers it would be the max over all 256 heads,
  10.6x: no saving at any ratio above 0.094.
- ``tangram``: heads clustered by budget into page groups of 4 (the repository's shipped cluster
  map ``pg4_r0.3.npz``): over-allocation 1.0645 (the map's ``residual_waste_fraction`` 6.1 %);
  no reclaim.

Deliberate simplifications: the over-allocation measured on the compressible tokens is applied to
the whole retained budget (the sink and recent-window tokens every head keeps would waste
nothing); it is taken as the same at every ratio (the paper finds the head ranking input- and
ratio-invariant); compression applies to every token of context, not only to the prompt; the
transient full KV of a prefill chunk before it is compressed is not held; prefill attention is
computed on the uncompressed chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetsched.errors import InputError


@dataclass(frozen=True, slots=True)
class KVLayout:
    """How a serving engine pages non-uniformly compressed KV (a named policy)."""

    name: str
    over_allocation: float
    reclaim_fraction: float
    about: str


#: The KV layouts a scenario can name (``precision.kv_compression.layout``).
KV_LAYOUTS: dict[str, KVLayout] = {
    "paged": KVLayout(
        name="paged",
        over_allocation=2.76,
        reclaim_fraction=0.25,
        about=(
            "a layer's KV heads share its pages; compressed after prefill, freed pages "
            "reclaimed at run time (Tangram's baseline)"
        ),
    ),
    "tangram": KVLayout(
        name="tangram",
        over_allocation=1.0645,
        reclaim_fraction=0.0,
        about=(
            "Tangram: budget reserved at scheduling (no reclaim), heads clustered by budget into "
            "page groups of 4, ahead-of-time load balance"
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class KVCompression:
    """Non-uniform per-head KV compression keeping ``ratio`` of the tokens on average, paged by
    ``layout``; ``over_allocation`` and ``reclaim_fraction`` default (``None``) to the layout's."""

    ratio: float
    layout: str = "paged"
    over_allocation: float | None = None
    reclaim_fraction: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.ratio, int | float) and 0 < self.ratio <= 1):
            raise InputError(f"kv_compression.ratio must be in (0, 1], got {self.ratio!r}")
        if self.layout not in KV_LAYOUTS:
            raise InputError(
                f"unknown kv_compression.layout {self.layout!r} (known: {', '.join(KV_LAYOUTS)})"
            )
        o, f = self.over_allocation, self.reclaim_fraction
        if o is not None and not (isinstance(o, int | float) and 1 <= o < float("inf")):
            raise InputError(f"kv_compression.over_allocation must be >= 1, got {o!r}")
        if f is not None and not (isinstance(f, int | float) and 0 <= f < 1):
            raise InputError(f"kv_compression.reclaim_fraction must be in [0, 1), got {f!r}")

    @property
    def over(self) -> float:
        o = self.over_allocation
        return KV_LAYOUTS[self.layout].over_allocation if o is None else float(o)

    @property
    def reclaim(self) -> float:
        f = self.reclaim_fraction
        return KV_LAYOUTS[self.layout].reclaim_fraction if f is None else float(f)

    @property
    def memory_fraction(self) -> float:
        """Share of the uncompressed KV bytes per token the layout holds (and decode reads)."""
        return min(1.0, self.ratio * self.over)

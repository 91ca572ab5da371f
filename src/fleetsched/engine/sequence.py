"""Per-request engine state."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetsched.core.request import Request
from fleetsched.errors import InputError
from fleetsched.metrics.records import RequestRecord

WAITING, PREFILL, DECODE, DONE = 0, 1, 2, 3

# Salts that derive engine-block keys from coarser prefix hashes (e.g. Mooncake's 512-token
# blocks hold 32 engine blocks): key = hash ^ SALT[i]. Fixed constants keep runs reproducible.
_SALTS: list[int] = [0] + [(0x9E3779B97F4A7C15 * (i + 1)) & 0x7FFFFFFFFFFFFFFF for i in range(4095)]

#: A request's *own* blocks (content no other request shares: what a trace without hashes, or
#: past its hashes, implies) have keys ``OWN_KEYS + (id << 32) + block index``. Trace hashes are
#: signed 64-bit (Python's ``hash``), so own keys never equal them, and they differ per request.
#: Only the request itself can hit them, after a recompute preemption, as vLLM's per-request
#: token hashes allow.
OWN_KEYS = 1 << 64


@dataclass(slots=True, eq=False)
class Seq:
    """A request inside one engine.

    Tokens: ``computed`` have their KV in cache; ``generated`` output tokens exist. While
    decoding, ``computed`` is not stored but derived as ``base + engine.dstep`` (each decode step
    adds one to every decoding request), which keeps a step O(1) in the batch size.

    Prefix caching: ``keys`` are the shared keys of the request's engine blocks, prompt first,
    then output (:attr:`Request.output_block_hashes`). Every full block with a shared key is
    registered in the cache as it fills (``done`` counts the leading blocks so settled: each one
    in ``held``, or a private duplicate of a block another running request holds). Blocks past
    the shared keys carry own keys (:data:`OWN_KEYS`): they stay private while the request runs
    and are cached when a recompute preemption frees them.
    """

    req: Request
    rec: RequestRecord
    keys: list[int] | None = None  # shared engine-block keys, prompt then output blocks
    keys_bt: int = 0  # the block size ``keys`` were derived for
    held: list[int] = field(default_factory=list)  # cached blocks this request references
    done: int = 0  # leading blocks whose shared key is settled (cached or a duplicate)
    blocks: int = 0  # blocks held while not decoding
    computed: int = 0
    generated: int = 0
    out_tokens: int = 0  # output tokens it will produce here (capped by max_model_len)
    target: int = 0  # prefill target: prompt + generated
    chunk: int = 0  # tokens scheduled in the current step
    base: int = 0  # while decoding: computed - engine.dstep
    entry: int = 0  # engine.dstep when it last started decoding
    state: int = WAITING
    epoch: int = 0  # bumped when leaving DECODE (invalidates finish-heap entries)
    swapped: bool = False  # waiting with its KV elsewhere (host memory or in transfer)
    transferred: bool = False  # KV arrives from another instance: resume without host cost
    migrated: bool = False  # arrives by live migration: resumes ahead of the waiting queue
    host_blocks: int = 0  # blocks whose copy in host memory is current (FastSwitch reuse)
    admitted_once: bool = False
    yield_to: Seq | None = None  # a more urgent request this prefill yielded to
    avail: int = 1 << 62  # prompt tokens arrived (streamed prompts); huge: the whole prompt
    energy_j: float = 0.0  # joules charged so far (engine/energy.py)
    e_mark: float = 0.0  # the engine's e_dec when it last started decoding

    def prefix_keys(self, block_tokens: int) -> list[int]:
        """Shared keys of the request's full engine blocks, from its block hashes: the prompt's,
        then (when the workload gives them) the output's."""
        if self.keys is None or self.keys_bt != block_tokens:
            self.keys_bt = block_tokens
            r = self.req
            hs = r.block_hashes
            if not hs:
                self.keys = []
                return self.keys
            if r.hash_block_tokens % block_tokens:
                raise InputError(
                    f"request {r.id}: hash_block_tokens={r.hash_block_tokens} is not a multiple"
                    f" of the engine block size {block_tokens}"
                )
            n_full = r.prompt_tokens // block_tokens
            if r.output_block_hashes and len(hs) == r.prompt_tokens // r.hash_block_tokens:
                hs = hs + r.output_block_hashes
                n_full = (r.prompt_tokens + r.output_tokens) // block_tokens
            ratio = r.hash_block_tokens // block_tokens
            if ratio == 1:
                self.keys = list(hs[:n_full])
            else:
                n = min(n_full, len(hs) * ratio)
                self.keys = [hs[i // ratio] ^ _SALTS[i % ratio] for i in range(n)]
        return self.keys

    def own_keys(self, lo: int, hi: int) -> list[int]:
        """Own keys (:data:`OWN_KEYS`) of blocks ``lo .. hi - 1``."""
        base = OWN_KEYS + (self.req.id << 32)
        return list(range(base + lo, base + hi))

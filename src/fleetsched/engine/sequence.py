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


@dataclass(slots=True, eq=False)
class Seq:
    """A request inside one engine.

    Tokens: ``computed`` have their KV in cache; ``generated`` output tokens exist. While
    decoding, ``computed`` is not stored but derived as ``base + engine.dstep`` (each decode step
    adds one to every decoding request), which keeps a step O(1) in the batch size.
    """

    req: Request
    rec: RequestRecord
    keys: list[int] | None = None  # engine-block prefix keys of the prompt (full blocks)
    keys_bt: int = 0  # the block size ``keys`` were derived for
    held: list[int] = field(default_factory=list)  # cached blocks this request references
    blocks: int = 0  # blocks held while not decoding
    computed: int = 0
    generated: int = 0
    target: int = 0  # prefill target: prompt + generated
    chunk: int = 0  # tokens scheduled in the current step
    base: int = 0  # while decoding: computed - engine.dstep
    entry: int = 0  # engine.dstep when it last started decoding
    state: int = WAITING
    epoch: int = 0  # bumped when leaving DECODE (invalidates finish-heap entries)
    swapped: bool = False  # waiting with its KV elsewhere (host memory or in transfer)
    transferred: bool = False  # KV arrives from another instance: resume without host cost
    host_blocks: int = 0  # blocks whose copy in host memory is current (FastSwitch reuse)
    admitted_once: bool = False
    yield_to: Seq | None = None  # a more urgent request this prefill yielded to

    def prefix_keys(self, block_tokens: int) -> list[int]:
        """Keys of the prompt's full engine blocks, derived from the request's block hashes."""
        if self.keys is None or self.keys_bt != block_tokens:
            self.keys_bt = block_tokens
            r = self.req
            n_full = r.prompt_tokens // block_tokens
            if r.hash_block_tokens % block_tokens:
                raise InputError(
                    f"request {r.id}: hash_block_tokens={r.hash_block_tokens} is not a multiple"
                    f" of the engine block size {block_tokens}"
                )
            ratio = r.hash_block_tokens // block_tokens
            if ratio == 1:
                self.keys = list(r.block_hashes[:n_full])
            else:
                hs = r.block_hashes
                n = min(n_full, len(hs) * ratio)
                self.keys = [hs[i // ratio] ^ _SALTS[i % ratio] for i in range(n)]
        return self.keys

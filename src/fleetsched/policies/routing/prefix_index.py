"""A router-side index of the prompt prefixes sent to each instance.

What a gateway can know about prefix caches without asking the engines: the prompts it sent
where. SGLang's cache-aware router keeps this as an approximate radix tree per worker, llm-d's
approximate prefix scorer as a per-pod LRU of block hashes plus a ``hash -> pods`` map; both
are this structure.

Prompts are chains of block hashes (hash ``i`` stands for the whole prefix up to block ``i``),
so a per-instance ``{hash: stamp}`` dict *is* a trie. A prompt inserted stamps every block of
its path with one tick, so ancestors are never older than their descendants: evicting whole
stamp groups oldest first removes leaves before their parents and every instance's set stays
prefix-closed. That lets the longest match be found by binary search, and a global
``{hash: bitmask of instances}`` finds every instance's match in O(k log n) lookups (k =
distinct match lengths).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter


class PrefixIndex:
    __slots__ = ("_owners", "_tick", "_trees")

    def __init__(self) -> None:
        self._trees: list[dict[int, int]] = []
        #: Block hash -> bitmask of the instances holding it.
        self._owners: dict[int, int] = {}
        self._tick = 0

    def grow(self, n: int) -> None:
        """Make room for instance indices below ``n``."""
        while len(self._trees) < n:
            self._trees.append({})

    def size(self, index: int) -> int:
        """Blocks held for instance ``index``."""
        return len(self._trees[index]) if index < len(self._trees) else 0

    def holds(self, index: int, h: int) -> bool:
        return index < len(self._trees) and h in self._trees[index]

    def match(self, index: int, hashes: Sequence[int]) -> int:
        """Length (in blocks) of the longest prefix of ``hashes`` held for ``index``."""
        if index >= len(self._trees):
            return 0
        return held_prefix(hashes, self._trees[index])  # stamps are >= 1

    def deepest(self, hashes: Sequence[int], mask: int) -> tuple[int, int]:
        """Longest prefix held by any instance in ``mask``, and the mask of those holding it."""
        n = held_prefix(hashes, self._owners, mask)
        if n == 0:
            return 0, 0
        return n, self._owners[hashes[n - 1]] & mask

    def match_all(self, hashes: Sequence[int], mask: int) -> dict[int, int]:
        """``{instance index: match length}`` for every instance in ``mask`` holding at least
        the first block (see :func:`match_groups`)."""
        return match_lengths(hashes, self._owners, mask)

    def match_groups(self, hashes: Sequence[int], mask: int) -> list[tuple[int, int]]:
        """``[(match length, bitmask of instances)]`` (see :func:`match_groups`)."""
        return match_groups(hashes, self._owners, mask)

    def insert(self, index: int, hashes: Sequence[int], held: int | None = None) -> None:
        """Insert (or touch) the path ``hashes`` for ``index``; ``held`` blocks of it were
        already there (computed when None)."""
        n = len(hashes)
        if n == 0:
            return
        if held is None:
            held = self.match(index, hashes)
        self._tick += 1
        self._trees[index].update(dict.fromkeys(hashes, self._tick))
        if held < n:
            bit = 1 << index
            owners = self._owners
            # The union of prefix-closed sets is prefix-closed: blocks [0, shared) have owners
            # (add this instance), blocks [shared, n) are new to every instance.
            lo = held_prefix(hashes, owners, lo=held)
            if lo > held:
                owners.update({h: owners[h] | bit for h in hashes[held:lo]})
            if lo < n:
                owners.update(dict.fromkeys(hashes[lo:], bit))

    def evict(self, index: int, keep: int) -> int:
        """Evict least recently inserted blocks of ``index`` until at most ``keep`` remain
        (whole stamp groups, leaves first: the set stays prefix-closed). Returns how many
        were evicted."""
        tree = self._trees[index] if index < len(self._trees) else {}
        cut = len(tree) - max(keep, 0)
        if cut <= 0:
            return 0
        items = sorted(tree.items(), key=itemgetter(1))
        last = items[cut - 1][1]
        while cut < len(items) and items[cut][1] == last:
            cut += 1
        owners = self._owners
        clear = ~(1 << index)
        for h, _ in items[:cut]:
            del tree[h]
            m = owners[h] & clear
            if m:
                owners[h] = m
            else:
                del owners[h]
        return cut


def held_prefix(hashes: Sequence[int], table: dict[int, int], mask: int = -1, lo: int = 0) -> int:
    """Length of the longest prefix of ``hashes`` whose entries in ``table`` share a bit with
    ``mask`` (missing: 0), for a prefix-closed ``table``; ``hashes[:lo]`` are known held."""
    get = table.get
    hi = len(hashes)
    while lo < hi:
        mid = (lo + hi) // 2
        if get(hashes[mid], 0) & mask:
            lo = mid + 1
        else:
            hi = mid
    return lo


def match_groups(hashes: Sequence[int], owners: dict[int, int], mask: int) -> list[tuple[int, int]]:
    """``[(length, bitmask of the instances holding exactly that long a prefix of hashes)]``
    for the instances in ``mask`` holding at least the first block, from ``owners`` (hash ->
    bitmask of holders) of prefix-closed per-instance sets. Holder sets shrink with depth, so
    the depths where instances drop out are found by bisecting only the ranges whose holder
    mask changes: O(k log n) lookups for k distinct lengths."""
    n = len(hashes)
    if n == 0:
        return []
    get = owners.get
    m0 = get(hashes[0], 0) & mask
    if not m0:
        return []
    out: list[tuple[int, int]] = []
    # Ranges (lo, hi, holders at lo, holders at hi); holders at n are none.
    stack = [(0, n, m0, 0)]
    while stack:
        lo, hi, mlo, mhi = stack.pop()
        if mlo == mhi:
            continue
        if hi == lo + 1:
            out.append((hi, mlo & ~mhi))
            continue
        mid = (lo + hi) // 2
        mmid = get(hashes[mid], 0) & mlo
        stack.append((lo, mid, mlo, mmid))
        stack.append((mid, hi, mmid, mhi))
    return out


def match_lengths(hashes: Sequence[int], owners: dict[int, int], mask: int) -> dict[int, int]:
    """:func:`match_groups` as ``{instance index: match length}``."""
    return _by_instance(match_groups(hashes, owners, mask))


def lengths_of(groups: list[tuple[int, int]], idx: Sequence[int]) -> list[int]:
    """Match length of each instance index in ``idx``, from :func:`match_groups`."""
    if not groups:
        return [0] * len(idx)
    if len(groups) == 1:
        ((n, m),) = groups
        return [n if m >> i & 1 else 0 for i in idx]
    get = _by_instance(groups).get
    return [get(i, 0) for i in idx]


def _by_instance(groups: list[tuple[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for length, m in groups:
        while m:
            low = m & -m
            out[low.bit_length() - 1] = length
            m ^= low
    return out


def strided(
    hashes: Sequence[int], block_tokens: int, unit_tokens: int
) -> tuple[Sequence[int], int]:
    """Every ``unit_tokens // block_tokens``-th chained hash and the tokens per returned
    block. A chained hash stands for the whole prefix before it, so the subsequence is a
    chain too; coarser blocks cost fewer lookups. Falls back to ``hashes`` when
    ``unit_tokens`` is not a multiple of ``block_tokens``."""
    stride = unit_tokens // block_tokens if block_tokens > 0 else 1
    if stride > 1 and stride * block_tokens == unit_tokens:
        return hashes[stride - 1 :: stride], unit_tokens
    return hashes, block_tokens


__all__ = [
    "PrefixIndex",
    "held_prefix",
    "lengths_of",
    "match_groups",
    "match_lengths",
    "strided",
]

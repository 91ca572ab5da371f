"""The documented deterministic tokenizer of the live runtime (``fleetsched-words-v1``).

The emulator counts prompt tokens with it, the gateway hashes prompt blocks with it, and
``bench`` builds prompts of exact lengths with it. It is not a model's tokenizer; it is small,
fast and fully specified, so counts are reproducible everywhere:

* **Pieces.** Text is cut into pieces by :data:`PIECE_RE`: a run of at most 6 letters, one
  digit, or any other single non-space character. Whitespace separates pieces and is never a
  token. ``"Hello, world 42!"`` is ``Hello | , | world | 4 | 2 | !``: 6 tokens; a longer word
  splits every 6 letters (``"tokenizer"`` is ``tokeni | zer``).
* **Vocabulary.** Token ids ``0 .. VOCAB_SIZE-1`` are pronounceable words of one to three
  consonant-vowel syllables (:func:`word`), at most 6 letters each. A piece that is a
  vocabulary word gets its id; any other piece gets ``crc32(piece as UTF-8) % VOCAB_SIZE``.
* **Decoding.** Token ``i`` decodes to ``" " + word(i)``, so ``encode(decode(ids)) == ids``
  for any ids in range: a text built from ids has exactly ``len(ids)`` tokens.
* **Chat.** :func:`render_chat` renders messages as ``<|role|>\\ncontent\\n`` each, then
  ``<|assistant|>\\n`` (the generation prompt); a tag costs 4 tokens plus its role's pieces
  (``<|user|>`` 5, ``<|assistant|>`` 6).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence

#: Number of token ids.
VOCAB_SIZE = 32_000
#: How text is cut into pieces (one piece = one token).
PIECE_RE = re.compile(r"[^\W\d_]{1,6}|\d|\S")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_SYLLABLES = [c + v for c in _CONSONANTS for v in _VOWELS]


def _build_vocab() -> list[str]:
    s = _SYLLABLES
    n = len(s)
    words = list(s)
    words += [a + b for a in s for b in s]
    i = 0
    while len(words) < VOCAB_SIZE:
        words.append(s[i // (n * n)] + s[(i // n) % n] + s[i % n])
        i += 1
    return words[:VOCAB_SIZE]


#: ``WORDS[i]`` is the text of token id ``i`` (without its leading space).
WORDS: tuple[str, ...] = tuple(_build_vocab())
#: ``PIECES[i] == " " + WORDS[i]``: what token ``i`` decodes to.
PIECES: tuple[str, ...] = tuple(" " + w for w in WORDS)
_IDS: dict[str, int] = {w: i for i, w in enumerate(WORDS)}


def word(token_id: int) -> str:
    """The vocabulary word of ``token_id``."""
    return WORDS[token_id]


def _oov_id(piece: str) -> int:
    return zlib.crc32(piece.encode("utf-8")) % VOCAB_SIZE


def encode(text: str) -> list[int]:
    """Token ids of ``text`` (see the module docstring)."""
    ids = list(map(_IDS.get, text.split()))
    if None not in ids:  # only vocabulary words: each is exactly one piece
        return ids  # type: ignore[return-value]
    pieces = PIECE_RE.findall(text)
    ids = list(map(_IDS.get, pieces))
    if None in ids:
        ids = [_oov_id(p) if i is None else i for p, i in zip(pieces, ids, strict=True)]
    return ids  # type: ignore[return-value]


def count(text: str) -> int:
    """Number of tokens of ``text``."""
    return len(PIECE_RE.findall(text))


def decode(ids: Iterable[int]) -> str:
    """Text of token ids: ``" " + word`` each."""
    pieces = PIECES
    return "".join([pieces[i] for i in ids])


def render_chat(messages: Sequence[tuple[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text of ``(role, content)`` messages under the documented chat template."""
    parts = [f"<|{role}|>\n{content}\n" for role, content in messages]
    if add_generation_prompt:
        parts.append("<|assistant|>\n")
    return "".join(parts)


def chat_overhead(roles: Sequence[str], add_generation_prompt: bool = True) -> int:
    """Tokens the template adds around messages with these roles (their contents excluded)."""
    return count(render_chat([(r, "") for r in roles], add_generation_prompt))


__all__ = [
    "PIECES",
    "PIECE_RE",
    "VOCAB_SIZE",
    "WORDS",
    "chat_overhead",
    "count",
    "decode",
    "encode",
    "render_chat",
    "word",
]

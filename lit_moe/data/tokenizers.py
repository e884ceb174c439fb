"""Tokenizers: raw bytes (default, nothing to train or download), a byte-level BPE trained on the
corpus and cached, or any Hugging Face ``tokenizer.json`` from a local folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Optional, Protocol

from lit_core.errors import UserInputError
from lit_core.io import atomic_write

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[SEP]")


class TextTokenizer(Protocol):
    vocab_size: int
    eos_id: Optional[int]

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


class ByteTokenizer:
    """UTF-8 bytes 0..255 plus an end-of-document token 256."""

    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` (e.g. a checkpoint's tokenizer.json)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eos_id = next(
            (tokenizer.token_to_id(t) for t in EOS_CANDIDATES if tokenizer.token_to_id(t) is not None), None)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids))


def train_bpe(texts: list[str], vocab_size: int, cache_dir: str | Path) -> HFTokenizer:
    """Train (or load from the cache) a byte-level BPE on ``texts``; cached by corpus hash."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415 (only for bpe)

    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    path = Path(cache_dir) / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if path.exists():
        return HFTokenizer(Tokenizer.from_file(str(path)))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    atomic_write(path, tokenizer.to_str())  # every rank may train it: each writes its own temporary file
    return HFTokenizer(tokenizer)


def load_tokenizer_file(location: str) -> HFTokenizer:
    """A ``tokenizer.json`` file, or a folder that contains one (a local HF checkpoint)."""
    from tokenizers import Tokenizer  # noqa: PLC0415 (only for tokenizer files)

    path = Path(location).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise UserInputError(
            f"tokenizer '{location}' not found: expected 'byte', 'bpe', a tokenizer.json file or a folder "
            f"containing tokenizer.json (looked for {path})")
    try:
        return HFTokenizer(Tokenizer.from_file(str(path)))
    except Exception as error:  # tokenizers raises a bare Exception on malformed files
        raise UserInputError(f"could not read tokenizer file {path}: {error}") from error

"""Named evaluation domains: the built-in ``docs`` / ``code`` corpora and the user's own text files,
tokenized with the model's tokenizer into a fixed token budget per domain.

Shape legend: N sequences, L = seq_len + 1 tokens per sequence (inputs and their next-token targets).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from lit_moe.data.corpus import BUILTIN_DOMAINS, builtin_documents, split_documents
from lit_moe.data.tokenizers import ByteTokenizer, load_tokenizer_file
from lit_moe.errors import UserInputError

BUILTIN_VAL_FRACTION = 0.1  # the held-out share BuiltinText uses by default


def load_tokenizer(spec: str):
    """``byte`` (the framework's default) or a ``tokenizer.json`` file / a folder holding one."""
    return ByteTokenizer() if spec == "byte" else load_tokenizer_file(spec)


def domain_documents(name: str, files: Optional[list[str]]) -> list[str]:
    """Texts of one domain: a user domain's files (one document each), or the held-out part of a
    built-in domain (text the models trained on ``cli.py fit`` never saw)."""
    if files is None:
        return split_documents(builtin_documents([name]), BUILTIN_VAL_FRACTION)[1]
    missing = [f for f in files if not Path(f).expanduser().is_file()]
    if missing:
        raise UserInputError(f"domain '{name}': file(s) not found: {missing}")
    return [Path(f).expanduser().read_text(encoding="utf-8", errors="replace") for f in files]


def domain_sequences(documents: list[str], tokenizer, tokens_per_domain: int, seq_len: int, name: str
                     ) -> torch.Tensor:
    """``tokens_per_domain // seq_len`` windows [N, seq_len + 1] spread evenly over the packed domain."""
    stream: list[int] = []
    for tokens in tokenizer.encode_batch(documents):
        stream.extend(tokens)
        if tokenizer.eos_id is not None:
            stream.append(tokenizer.eos_id)
    available = (len(stream) - 1) // seq_len
    wanted = tokens_per_domain // seq_len
    if wanted < 1:
        raise UserInputError(f"tokens_per_domain={tokens_per_domain} is below one sequence of seq_len={seq_len}")
    if available < wanted:
        raise UserInputError(f"domain '{name}' has {len(stream)} tokens, fewer than tokens_per_domain="
                             f"{tokens_per_domain} (+1): add text or lower tokens_per_domain")
    stream_T = torch.tensor(stream, dtype=torch.long)
    starts = torch.linspace(0, available - 1, wanted).round().long() * seq_len
    return torch.stack([stream_T[s : s + seq_len + 1] for s in starts.tolist()])


class DomainDataModule(pl.LightningDataModule):
    """Fixed-budget token sequences of named domains, one test dataloader per domain (in order),
    and one predict dataloader over all domains (for the activation harvest).

    Args:
        builtin: Built-in domains (``docs``: Python reference documentation, ``code``: standard-library
            sources); their held-out 10% is used, which ``cli.py fit`` on the built-in corpus never trains on.
        files: User domains, ``{name: [text files]}``; each file is one document.
        tokenizer: The models' tokenizer: ``byte`` or a ``tokenizer.json`` file / folder (for a BPE trained
            by ``cli.py fit``, the cached JSON under its ``data.cache_dir``).
        tokens_per_domain: Token budget of every domain (rounded down to whole sequences).
        seq_len: Tokens per sequence (each sequence also carries its next-token targets).
        batch_size: Sequences per batch (for the harvest: sequences per cache shard).
    """

    def __init__(
        self,
        builtin: list[str] = ["docs", "code"],  # noqa: B006 (jsonargparse needs a literal default)
        files: Optional[dict[str, list[str]]] = None,
        tokenizer: str = "byte",
        tokens_per_domain: int = 32768,
        seq_len: int = 256,
        batch_size: int = 8,
    ) -> None:
        super().__init__()
        self.builtin = list(builtin)
        self.files = {name: list(paths) for name, paths in (files or {}).items()}
        clash = sorted(set(self.builtin) & set(self.files))
        if clash:
            raise UserInputError(f"domain name(s) {clash} are both built-in and user domains: rename the user domain")
        if not self.builtin and not self.files:
            raise UserInputError("no domains: set data.builtin (docs, code) and/or data.files {name: [paths]}")
        if seq_len < 1 or batch_size < 1:
            raise UserInputError(f"seq_len ({seq_len}) and batch_size ({batch_size}) must be >= 1")
        self.tokenizer_spec = tokenizer
        self.tokens_per_domain = tokens_per_domain
        self.seq_len = seq_len
        self.batch_size = batch_size
        self._check_builtin_names()

    def _check_builtin_names(self) -> None:
        unknown = sorted(set(self.builtin) - set(BUILTIN_DOMAINS))
        if unknown:
            raise UserInputError(f"unknown built-in domain(s) {unknown}: choose from {list(BUILTIN_DOMAINS)} "
                                 "or list your own files under data.files")

    @property
    def domain_names(self) -> list[str]:
        return self.builtin + list(self.files)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_spec)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @cached_property
    def sequences(self) -> dict[str, torch.Tensor]:
        """Domain name -> int64 token windows [N, seq_len + 1]."""
        return {name: domain_sequences(domain_documents(name, self.files.get(name)), self.tokenizer,
                                       self.tokens_per_domain, self.seq_len, name)
                for name in self.domain_names}

    def setup(self, stage: Optional[str] = None) -> None:
        self.sequences  # noqa: B018 (tokenize once, before the loop starts)

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(TensorDataset(seq_NL), batch_size=self.batch_size, shuffle=False)
                for seq_NL in self.sequences.values()]

    def predict_dataloader(self) -> DataLoader:
        datasets = [TensorDataset(seq_NL) for seq_NL in self.sequences.values()]
        return DataLoader(ConcatDataset(datasets), batch_size=self.batch_size, shuffle=False)

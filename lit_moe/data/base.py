"""What every language-modelling source shares: the tokenizer, packing documents into fixed-length
(input, target) windows, the resumable data-parallel sampler and the fast-forward on resume.

A source is a subclass (``BuiltinText``, ``LocalTextFiles``, ``HubTextStream``, or a user's own)
that says where its documents come from: ``load_documents()`` for in-memory corpora, or
``setup`` building streamed datasets.
"""

from __future__ import annotations

from functools import cached_property
from typing import Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lit_core.errors import UserInputError
from lit_moe.data.packing import PackedSequences, pack_documents
from lit_moe.data.sampler import ResumableSampler
from lit_moe.data.tokenizers import ByteTokenizer, TextTokenizer, load_tokenizer_file, train_bpe


class PackedTextDataModule(pl.LightningDataModule):
    """Packed next-token-prediction batches of shape (batch_size, seq_len) from a source's documents;
    an end-of-document token follows every document.

    Args:
        tokenizer: ``byte`` (raw UTF-8 bytes + EOS, 257 tokens), ``bpe`` (byte-level BPE trained on
            the training text and cached), or a path to a ``tokenizer.json`` / a folder containing one.
        bpe_vocab_size: Vocabulary size of the trained BPE.
        cache_dir: Where trained tokenizers are cached.
        seq_len: Tokens per training sequence.
        batch_size: Sequences per batch per device.
        num_workers: DataLoader worker processes.
        shuffle: Shuffle training sequences (a fresh deterministic order per epoch from ``seed``).
        seed: Seed of the shuffling order; a resumed run continues the same order mid-epoch.
    """

    def __init__(
        self,
        tokenizer: str = "byte",
        bpe_vocab_size: int = 4096,
        cache_dir: str = ".cache/lit_moe",
        seq_len: int = 256,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer_spec = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.cache_dir = cache_dir
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.seed = seed
        self.train_dataset = self.val_dataset = None
        if seq_len < 1 or batch_size < 1:
            raise UserInputError(f"data.seq_len ({seq_len}) and data.batch_size ({batch_size}) must be >= 1")
        if tokenizer not in ("byte", "bpe"):
            load_tokenizer_file(tokenizer)  # raises a clear error if absent or unreadable

    # ------------------------------------------------------------- the source
    def load_documents(self) -> tuple[list[str], list[str]]:
        """(train, val) document texts of an in-memory source; streamed sources override ``setup``."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_documents() or setup()")

    def describe_source(self) -> str:
        """Names the data in error messages (e.g. ``files ['a.txt']``)."""
        return type(self).__name__

    @cached_property
    def documents(self) -> tuple[list[str], list[str]]:
        train, val = self.load_documents()
        if not train:
            raise UserInputError(f"the training corpus is empty ({self.describe_source()}): add text to it")
        return train, val

    # -------------------------------------------------------------- tokenizer
    @cached_property
    def tokenizer(self) -> TextTokenizer:
        if self.tokenizer_spec == "byte":
            return ByteTokenizer()
        if self.tokenizer_spec == "bpe":
            return train_bpe(self.documents[0], self.bpe_vocab_size, self.cache_dir)
        return load_tokenizer_file(self.tokenizer_spec)

    @property
    def vocab_size(self) -> int:
        """Linked to the model by the CLI (``data.vocab_size`` -> ``model.tokenizer_vocab_size``)."""
        return self.tokenizer.vocab_size

    def token_streams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The packed (train, val) token streams: each document's tokens, then the EOS token."""
        train, val = self.documents
        eos = self.tokenizer.eos_id
        return (pack_documents(self.tokenizer.encode_batch(train), eos),
                pack_documents(self.tokenizer.encode_batch(val), eos))

    # -------------------------------------------------------------- lightning
    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        train_stream, val_stream = self.token_streams()
        self.train_dataset = self._packed(train_stream, "training")
        self.val_dataset = self._packed(val_stream, "validation")

    def _packed(self, stream, split: str) -> PackedSequences:
        if stream.numel() and int(stream.max()) >= self.vocab_size:
            raise UserInputError(f"token id {int(stream.max())} exceeds the tokenizer's vocabulary {self.vocab_size}")
        dataset = PackedSequences(stream, self.seq_len)
        if len(dataset) == 0:
            raise UserInputError(
                f"the {split} split of {self.describe_source()} has {stream.numel()} tokens, shorter than one "
                f"sequence of data.seq_len={self.seq_len} (+1): add text or lower data.seq_len")
        return dataset

    def rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self.rank_and_world()
        sampler = ResumableSampler(self.train_dataset, world, rank, shuffle=self.shuffle, seed=self.seed)
        self._fast_forward(sampler)
        return DataLoader(self.train_dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def _fast_forward(self, sampler: ResumableSampler) -> None:
        """On resume, skip the batches the checkpointed run already trained on (checkpoints are
        taken at optimizer-step boundaries: global_step x accumulate_grad_batches batches per rank)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.global_step == 0:
            return
        batches_per_epoch = len(sampler) // self.batch_size
        consumed = trainer.global_step * trainer.accumulate_grad_batches
        epoch, batch_in_epoch = divmod(consumed, max(batches_per_epoch, 1))
        sampler.fast_forward(epoch, batch_in_epoch * self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

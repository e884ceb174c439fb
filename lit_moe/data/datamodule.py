"""Language-modelling data on Hugging Face ``datasets``: the built-in corpus, local files, or a
streaming hub dataset; tokenized, packed into fixed-length sequences."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal, Optional

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from lit_moe.data.corpus import builtin_documents, split_documents
from lit_moe.data.sampler import ResumableSampler
from lit_moe.data.packing import PackedSequences, StreamingPackedSequences, pack_documents
from lit_moe.data.tokenizers import ByteTokenizer, TextTokenizer, load_tokenizer_file, train_bpe
from lit_core.errors import UserInputError

FILE_FORMATS = {".txt": "text", ".text": "text", ".md": "text", ".json": "json", ".jsonl": "json",
                ".parquet": "parquet"}


def _infer_format(files: list[str]) -> str:
    formats = {FILE_FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in formats or len(formats) != 1:
        raise UserInputError(
            f"cannot infer the file format of {files}: use one of {sorted(FILE_FORMATS)} extensions for all "
            "files, or set data.file_format to text, json or parquet")
    return formats.pop()


class TextDataModule(pl.LightningDataModule):
    """Packed next-token-prediction batches of shape (batch_size, seq_len).

    Args:
        source: ``builtin`` (CPython's docs/stdlib, no download), ``files`` (local text/jsonl/parquet),
            or ``hub`` (a Hugging Face dataset streamed over the network, e.g. FineWeb-Edu).
        builtin_domains: Built-in domains to include: ``docs`` (Python reference documentation) and/or
            ``code`` (standard-library sources).
        train_files: Local files for ``source: files``.
        val_files: Local validation files; if omitted, documents of ``train_files`` are split by
            ``val_fraction``.
        file_format: ``text``, ``json`` (jsonl) or ``parquet``; inferred from the extension if omitted.
        text_field: Column holding the text in json/parquet/hub datasets.
        hub_path: Hub dataset name for ``source: hub`` (e.g. ``HuggingFaceFW/fineweb-edu``).
        hub_name: Hub dataset configuration (e.g. ``sample-10BT``).
        hub_split: Hub split to stream.
        hub_val_documents: The first N streamed documents form the validation set (skipped for train).
        tokenizer: ``byte`` (raw UTF-8 bytes + EOS, 257 tokens), ``bpe`` (byte-level BPE trained on
            the training text and cached), or a path to a ``tokenizer.json`` / a folder containing one.
        bpe_vocab_size: Vocabulary size of the trained BPE.
        cache_dir: Where trained tokenizers are cached.
        seq_len: Tokens per training sequence.
        batch_size: Sequences per batch per device.
        val_fraction: Share of each document held out for validation (built-in and files sources).
        num_workers: DataLoader worker processes.
        shuffle: Shuffle training sequences (a fresh deterministic order per epoch from ``seed``).
        seed: Seed of the shuffling order; a resumed run continues the same order mid-epoch.
    """

    def __init__(
        self,
        source: Literal["builtin", "files", "hub"] = "builtin",
        builtin_domains: list[str] = ["docs"],  # noqa: B006 (jsonargparse needs a literal default)
        train_files: Optional[list[str]] = None,
        val_files: Optional[list[str]] = None,
        file_format: Optional[Literal["text", "json", "parquet"]] = None,
        text_field: str = "text",
        hub_path: Optional[str] = None,
        hub_name: Optional[str] = None,
        hub_split: str = "train",
        hub_val_documents: int = 500,
        tokenizer: str = "byte",
        bpe_vocab_size: int = 4096,
        cache_dir: str = ".cache/lit_moe",
        seq_len: int = 256,
        batch_size: int = 8,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.builtin_domains = list(builtin_domains)
        self.train_files = list(train_files or [])
        self.val_files = list(val_files or [])
        self.text_field = text_field
        self.hub_path, self.hub_name, self.hub_split = hub_path, hub_name, hub_split
        self.hub_val_documents = hub_val_documents
        self.tokenizer_spec = tokenizer
        self.bpe_vocab_size = bpe_vocab_size
        self.cache_dir = cache_dir
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.shuffle = shuffle
        self.seed = seed
        self.train_dataset = self.val_dataset = None
        self._validate_arguments()
        self.file_format = file_format or (_infer_format(self.train_files + self.val_files) if source == "files" else None)

    # ----------------------------------------------------------------- checks
    def _validate_arguments(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise UserInputError(f"data.seq_len ({self.seq_len}) and data.batch_size ({self.batch_size}) must be >= 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise UserInputError(f"data.val_fraction={self.val_fraction} must lie strictly between 0 and 1")
        if self.source == "files":
            if not self.train_files:
                raise UserInputError("data.source is 'files' but data.train_files is empty: list your text/jsonl/parquet files")
            missing = [f for f in self.train_files + self.val_files if not Path(f).expanduser().is_file()]
            if missing:
                raise UserInputError(f"data file(s) not found: {missing}. Check the paths in data.train_files / data.val_files")
        if self.source == "hub" and not self.hub_path:
            raise UserInputError("data.source is 'hub' but data.hub_path is not set (e.g. HuggingFaceFW/fineweb-edu)")
        if self.tokenizer_spec not in ("byte", "bpe"):
            load_tokenizer_file(self.tokenizer_spec)  # raises a clear error if absent or unreadable
        if self.tokenizer_spec == "bpe" and self.source == "hub":
            raise UserInputError("tokenizer 'bpe' trains on the whole training set, which a streamed hub dataset "
                                 "cannot provide: pass a tokenizer.json path (e.g. your checkpoint's folder)")

    # ------------------------------------------------------------ documents
    def _load_file_texts(self, files: list[str]) -> list[str]:
        from datasets import load_dataset

        dataset = load_dataset(self.file_format, data_files=[str(Path(f).expanduser()) for f in files], split="train")
        column = "text" if self.file_format == "text" else self.text_field
        if column not in dataset.column_names:
            raise UserInputError(f"column '{column}' not in {files} (columns: {dataset.column_names}); set data.text_field")
        return [t for t in dataset[column] if t and t.strip()]

    @cached_property
    def _documents(self) -> tuple[list[str], list[str]]:
        """(train, val) texts for the in-memory sources."""
        if self.source == "builtin":
            train, val = split_documents(builtin_documents(self.builtin_domains), self.val_fraction)
        elif self.val_files:
            train, val = self._load_file_texts(self.train_files), self._load_file_texts(self.val_files)
        else:
            train, val = split_documents(self._load_file_texts(self.train_files), self.val_fraction)
        if not train:
            raise UserInputError(f"the training corpus is empty ({self._describe_source()}): add text to it")
        return train, val

    def _describe_source(self) -> str:
        if self.source == "files":
            return f"files {self.train_files}"
        return f"built-in domains {self.builtin_domains}" if self.source == "builtin" else f"hub {self.hub_path}"

    def _hub_texts(self, rank: int, world_size: int, validation: bool):
        from datasets import load_dataset
        from datasets.distributed import split_dataset_by_node

        try:
            stream = load_dataset(self.hub_path, self.hub_name, split=self.hub_split, streaming=True)
        except Exception as error:
            raise UserInputError(f"could not open hub dataset {self.hub_path} ({self.hub_name}): {error}. "
                                 "It needs network access; offline, use source: files") from error
        stream = stream.take(self.hub_val_documents) if validation else stream.skip(self.hub_val_documents)
        if world_size > 1:
            stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
        return (row[self.text_field] for row in stream)

    # ------------------------------------------------------------ tokenizer
    @cached_property
    def tokenizer(self) -> TextTokenizer:
        if self.tokenizer_spec == "byte":
            return ByteTokenizer()
        if self.tokenizer_spec == "bpe":
            return train_bpe(self._documents[0], self.bpe_vocab_size, self.cache_dir)
        return load_tokenizer_file(self.tokenizer_spec)

    @property
    def vocab_size(self) -> int:
        """Linked to the model by cli.py (``data.vocab_size`` -> ``model.tokenizer_vocab_size``)."""
        return self.tokenizer.vocab_size

    # ----------------------------------------------------------- lightning
    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        if self.source == "hub":
            rank, world = self._rank_and_world()
            encode, eos = self.tokenizer.encode_batch, self.tokenizer.eos_id
            self.train_dataset = StreamingPackedSequences(
                lambda r, w: self._hub_texts(r, w, validation=False), encode, eos, self.seq_len, rank, world)
            self.val_dataset = StreamingPackedSequences(
                lambda r, w: self._hub_texts(r, w, validation=True), encode, eos, self.seq_len, rank, world)
            return
        train_texts, val_texts = self._documents
        self.train_dataset = self._packed(train_texts, "training")
        self.val_dataset = self._packed(val_texts, "validation")

    def _packed(self, texts: list[str], split: str) -> PackedSequences:
        stream = pack_documents(self.tokenizer.encode_batch(texts), self.tokenizer.eos_id)
        if stream.numel() and int(stream.max()) >= self.vocab_size:
            raise UserInputError(f"token id {int(stream.max())} exceeds the tokenizer's vocabulary {self.vocab_size}")
        dataset = PackedSequences(stream, self.seq_len)
        if len(dataset) == 0:
            raise UserInputError(
                f"the {split} split of {self._describe_source()} has {stream.numel()} tokens, shorter than one "
                f"sequence of data.seq_len={self.seq_len} (+1): add text or lower data.seq_len")
        return dataset

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        if not isinstance(self.train_dataset, PackedSequences):  # streamed: sharded in the dataset itself
            return DataLoader(self.train_dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        rank, world = self._rank_and_world()
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


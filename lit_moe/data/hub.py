"""A Hugging Face hub dataset streamed over the network (e.g. FineWeb-Edu), packed on the fly."""

from __future__ import annotations

from typing import Iterator, Optional

from torch.utils.data import DataLoader

from lit_core.errors import UserInputError
from lit_moe.data.base import PackedTextDataModule
from lit_moe.data.packing import StreamingPackedSequences


class HubTextStream(PackedTextDataModule):
    """Streamed hub documents; each data-parallel rank reads its own shard.

    Args:
        hub_path: Hub dataset name (e.g. ``HuggingFaceFW/fineweb-edu``).
        hub_name: Hub dataset configuration (e.g. ``sample-10BT``).
        hub_split: Split to stream.
        hub_val_documents: The first N streamed documents form the validation set (skipped for train).
        text_field: Column holding the text.
        **kwargs: Tokenizer, packing and loader arguments of ``PackedTextDataModule`` (``tokenizer``
            must be ``byte`` or a ``tokenizer.json``: a BPE cannot be trained on a stream).
    """

    def __init__(self, hub_path: str, hub_name: Optional[str] = None, hub_split: str = "train",
                 hub_val_documents: int = 500, text_field: str = "text", **kwargs) -> None:
        super().__init__(**kwargs)
        if not hub_path:
            raise UserInputError("data.hub_path is not set (e.g. HuggingFaceFW/fineweb-edu)")
        if self.tokenizer_spec == "bpe":
            raise UserInputError("tokenizer 'bpe' trains on the whole training set, which a streamed hub dataset "
                                 "cannot provide: pass a tokenizer.json path (e.g. your checkpoint's folder)")
        if hub_val_documents < 1:
            raise UserInputError(f"data.hub_val_documents={hub_val_documents} must be >= 1")
        self.hub_path, self.hub_name, self.hub_split = hub_path, hub_name, hub_split
        self.hub_val_documents = hub_val_documents
        self.text_field = text_field

    def describe_source(self) -> str:
        return f"hub {self.hub_path}"

    def hub_texts(self, rank: int, world_size: int, validation: bool) -> Iterator[str]:
        from datasets import load_dataset  # noqa: PLC0415 (slow import, only when streaming)
        from datasets.distributed import split_dataset_by_node  # noqa: PLC0415
        from datasets.exceptions import DatasetsError  # noqa: PLC0415

        try:
            stream = load_dataset(self.hub_path, self.hub_name, split=self.hub_split, streaming=True)
        except (DatasetsError, ConnectionError, OSError, ValueError) as error:  # offline, unknown name/config
            raise UserInputError(f"could not open hub dataset {self.hub_path} ({self.hub_name}): {error}. "
                                 "It needs network access; offline, use lit_moe.data.LocalTextFiles") from error
        stream = stream.take(self.hub_val_documents) if validation else stream.skip(self.hub_val_documents)
        if world_size > 1:
            stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
        return (row[self.text_field] for row in stream)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_dataset is not None:
            return
        rank, world = self.rank_and_world()
        encode, eos = self.tokenizer.encode_batch, self.tokenizer.eos_id
        self.train_dataset = StreamingPackedSequences(
            lambda r, w: self.hub_texts(r, w, validation=False), encode, eos, self.seq_len, rank, world)
        self.val_dataset = StreamingPackedSequences(
            lambda r, w: self.hub_texts(r, w, validation=True), encode, eos, self.seq_len, rank, world)

    def train_dataloader(self) -> DataLoader:  # sharded in the dataset itself; no sampler
        return DataLoader(self.train_dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

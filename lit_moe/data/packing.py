"""Sequence packing: documents are tokenized, joined with an end-of-document token and cut into
fixed-length (input, target) windows, so no token is wasted on padding."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info


def pack_documents(token_lists: Iterable[list[int]], eos_id: Optional[int]) -> torch.Tensor:
    """One flat int64 stream: doc0 <eos> doc1 <eos> ..."""
    stream: list[int] = []
    for tokens in token_lists:
        stream.extend(tokens)
        if eos_id is not None:
            stream.append(eos_id)
    return torch.tensor(stream, dtype=torch.long)


class PackedSequences(Dataset):
    """Non-overlapping windows of ``seq_len + 1`` tokens; item i = (tokens[iL : iL+L], shifted by one)."""

    def __init__(self, stream: torch.Tensor, seq_len: int) -> None:
        self.stream = stream
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(0, (self.stream.numel() - 1) // self.seq_len)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = index * self.seq_len
        window = self.stream[start : start + self.seq_len + 1]
        return window[:-1], window[1:]


class StreamingPackedSequences(IterableDataset):
    """Packs an iterable of texts (e.g. a streaming hub dataset) on the fly.

    ``texts_for_shard(rank, world_size)`` returns the texts this data-parallel rank should read;
    dataloader workers split that shard further by document index.
    """

    def __init__(self, texts_for_shard: Callable[[int, int], Iterable[str]],
                 encode: Callable[[list[str]], list[list[int]]], eos_id: Optional[int], seq_len: int, rank: int = 0,
                 world_size: int = 1, docs_per_batch: int = 64) -> None:
        self.texts_for_shard = texts_for_shard
        self.encode = encode
        self.eos_id = eos_id
        self.seq_len = seq_len
        self.rank = rank
        self.world_size = world_size
        self.docs_per_batch = docs_per_batch

    def _texts(self) -> Iterator[str]:
        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        for index, text in enumerate(self.texts_for_shard(self.rank, self.world_size)):
            if index % num_workers == worker_id:
                yield text

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        buffer: list[int] = []
        pending: list[str] = []
        window = self.seq_len + 1

        def flush() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for tokens in self.encode(pending):
                buffer.extend(tokens)
                if self.eos_id is not None:
                    buffer.append(self.eos_id)
            pending.clear()
            while len(buffer) >= window:
                chunk = torch.tensor(buffer[:window], dtype=torch.long)
                del buffer[: self.seq_len]
                yield chunk[:-1], chunk[1:]

        for text in self._texts():
            pending.append(text)
            if len(pending) >= self.docs_per_batch:
                yield from flush()
        yield from flush()

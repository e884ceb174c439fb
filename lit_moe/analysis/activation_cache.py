"""Sharded, memory-mapped on-disk cache of activations of several models on the same tokens.

Shape legend: N sequences, S positions per sequence, T tokens (rows), C columns (all sites side by side).

Folder layout:
- ``meta.json``: dtype, sequence length, shard size, the sites (model, site, width, column offset),
  the model sources, tokenizer and domains;
- ``tokens.npy``: int32 [N, S] input tokens (row ``t`` of the cache is token ``t % S`` of sequence
  ``t // S``), ``domains.npy``: int16 [N] domain index of each sequence;
- ``shard_00000.bin`` ...: raw little-endian 16-bit floats [rows, C], rows = S * sequences in the
  shard. Each shard is written to ``*.tmp`` and renamed, so an interrupted harvest leaves only
  whole shards behind and resumes at the first missing one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lit_moe.errors import UserInputError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class SiteColumns:
    model: str
    site: str
    width: int
    offset: int

    @property
    def name(self) -> str:
        return f"{self.model}/{self.site}"


@dataclass
class CacheMeta:
    dtype: str
    seq_len: int
    num_sequences: int
    sequences_per_shard: int
    sites: list[SiteColumns]
    models: dict[str, str]
    tokenizer: str
    domains: list[str]

    @property
    def num_columns(self) -> int:
        return sum(site.width for site in self.sites)

    @property
    def num_shards(self) -> int:
        return -(-self.num_sequences // self.sequences_per_shard)

    @property
    def rows_per_shard(self) -> int:
        return self.sequences_per_shard * self.seq_len

    @property
    def num_tokens(self) -> int:
        return self.num_sequences * self.seq_len

    def shard_rows(self, shard: int) -> int:
        first = shard * self.sequences_per_shard
        return (min(first + self.sequences_per_shard, self.num_sequences) - first) * self.seq_len

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "format": 1}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "CacheMeta":
        values = json.loads(text)
        values.pop("format", None)
        values["sites"] = [SiteColumns(**site) for site in values["sites"]]
        return cls(**values)


def shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard_{shard:05d}.bin"


class ActivationCacheWriter:
    """Creates a cache folder (or reopens one with the same plan, to resume) and writes whole shards."""

    def __init__(self, folder: str | Path, meta: CacheMeta, tokens_NS: torch.Tensor, domains_N: torch.Tensor) -> None:
        if meta.dtype not in DTYPES:
            raise UserInputError(f"cache dtype {meta.dtype!r} is not one of {sorted(DTYPES)}")
        self.folder = Path(folder)
        self.meta = meta
        meta_path = self.folder / "meta.json"
        if meta_path.exists():
            existing = CacheMeta.from_json(meta_path.read_text())
            saved_tokens = np.load(self.folder / "tokens.npy")
            if existing != meta or not np.array_equal(saved_tokens, tokens_NS.numpy().astype(np.int32)):
                raise UserInputError(f"{self.folder} holds a different harvest (other models, sites, tokens or "
                                     "settings): choose a new cache_dir or delete the old one")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / "tokens.npy", tokens_NS.numpy().astype(np.int32))
        np.save(self.folder / "domains.npy", domains_N.numpy().astype(np.int16))
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(meta.to_json())
        tmp.replace(meta_path)

    def has_shard(self, shard: int) -> bool:
        return shard_path(self.folder, shard).exists()

    def write_shard(self, shard: int, values_TC: torch.Tensor) -> None:
        expected = (self.meta.shard_rows(shard), self.meta.num_columns)
        if tuple(values_TC.shape) != expected:
            raise ValueError(f"shard {shard} has shape {tuple(values_TC.shape)}, expected {expected}")
        bits = values_TC.to(DTYPES[self.meta.dtype]).contiguous().cpu().view(torch.int16).numpy()
        path = shard_path(self.folder, shard)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(bits.astype("<i2", copy=False).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)


class ActivationCache:
    """Read side: memory-maps every shard; ``rows(index_T, columns)`` gathers tokens as fp32 (or raw)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise UserInputError(f"{self.folder} is not an activation cache (no meta.json): run the harvest first "
                                 "(cli.py predict --config configs/analysis/harvest.yaml)")
        self.meta = CacheMeta.from_json(meta_path.read_text())
        missing = [s for s in range(self.meta.num_shards) if not shard_path(self.folder, s).exists()]
        if missing:
            raise UserInputError(f"{self.folder} is incomplete ({len(missing)} of {self.meta.num_shards} shards "
                                 "missing): rerun the same harvest command, it resumes at the first missing shard")
        self._maps: dict[int, np.memmap] = {}
        self.tokens_NS = torch.from_numpy(np.load(self.folder / "tokens.npy").astype(np.int64))
        self.domains_N = torch.from_numpy(np.load(self.folder / "domains.npy").astype(np.int64))

    def __len__(self) -> int:
        return self.meta.num_tokens

    def site(self, name: str) -> SiteColumns:
        for site in self.meta.sites:
            if site.name == name:
                return site
        raise UserInputError(f"site {name!r} is not in the cache {self.folder}; it holds "
                             f"{[s.name for s in self.meta.sites]}")

    def shard(self, shard: int) -> np.memmap:
        if shard not in self._maps:
            self._maps[shard] = np.memmap(shard_path(self.folder, shard), dtype="<i2", mode="r",
                                          shape=(self.meta.shard_rows(shard), self.meta.num_columns))
        return self._maps[shard]

    def raw_rows(self, index_T: torch.Tensor, column_slices: list[slice]) -> torch.Tensor:
        """Stored values (``meta.dtype``) of global rows ``index_T`` at the given column ranges,
        concatenated along the columns [T, sum of widths]."""
        index_T = index_T.long()
        width = sum(s.stop - s.start for s in column_slices)
        out = np.empty((index_T.numel(), width), dtype="<i2")
        shard_T = index_T // self.meta.rows_per_shard
        for shard in torch.unique(shard_T).tolist():
            positions = (shard_T == shard).nonzero().squeeze(-1)
            local = (index_T[positions] - shard * self.meta.rows_per_shard).numpy()
            order = np.argsort(local, kind="stable")  # memory-mapped reads in file order
            block = self.shard(shard)[local[order]]
            positions = positions.numpy()[order]
            out[positions] = np.concatenate([block[:, s] for s in column_slices], axis=1)
        return torch.from_numpy(out).view(DTYPES[self.meta.dtype])

    def activations(self, index_T: torch.Tensor, site_names: list[str]) -> torch.Tensor:
        """fp32 activations [T, len(site_names), D] of equal-width sites (e.g. model A and model B)."""
        sites = [self.site(name) for name in site_names]
        widths = {site.width for site in sites}
        if len(widths) != 1:
            raise UserInputError(f"sites {site_names} have different widths {sorted(widths)}: a crosscoder needs "
                                 "equal widths")
        slices = [slice(site.offset, site.offset + site.width) for site in sites]
        return self.raw_rows(index_T, slices).float().view(index_T.numel(), len(sites), widths.pop())

    def context(self, row: int, before: int) -> tuple[torch.Tensor, int]:
        """Tokens of the row's sequence up to and including it (at most ``before`` earlier ones), its domain."""
        sequence, position = divmod(int(row), self.meta.seq_len)
        start = max(0, position - before)
        return self.tokens_NS[sequence, start : position + 1], int(self.domains_N[sequence])


def harvest_meta(models: dict[str, str], sites: dict[str, list[str]], widths: dict[str, int], dtype: str,
                 seq_len: int, num_sequences: int, sequences_per_shard: int, tokenizer: str,
                 domains: list[str]) -> CacheMeta:
    columns, offset = [], 0
    for model, names in sites.items():
        for site in names:
            columns.append(SiteColumns(model, site, widths[model], offset))
            offset += widths[model]
    return CacheMeta(dtype, seq_len, num_sequences, sequences_per_shard, columns, dict(models), tokenizer,
                     list(domains))


def open_cache(folder: Optional[str | Path]) -> ActivationCache:
    if folder is None:
        raise UserInputError("cache_dir is not set: point it at the folder the harvest wrote")
    return ActivationCache(folder)

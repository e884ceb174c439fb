"""Harvest activations of several models at residual-stream sites into an ``ActivationCache``.

    python cli.py predict --config configs/analysis/harvest.yaml

Shape legend: B sequences in a batch (= one shard), S positions, D model width, T = B*S rows.

Sites (per model): ``resid_pre.<i>`` (input of block i), ``resid_mid.<i>`` (after block i's
attention, the input of its MLP/MoE sub-layer), ``resid_post.<i>`` (output of block i).
The forward stops as soon as the deepest requested site is stored (later blocks and the unembedding
are not needed). Each predict batch is one shard; a shard already on disk is skipped without running the models,
so re-running the same command resumes an interrupted harvest.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator, Literal

import lightning.pytorch as pl
import torch
from torch import nn

from lit_moe.analysis.activation_cache import ActivationCacheWriter, harvest_meta
from lit_moe.analysis.loading import load_language_model
from lit_moe.errors import UserInputError
from lit_moe.model import MoETransformer

SITE_PATTERN = re.compile(r"^(resid_pre|resid_mid|resid_post)\.(\d+)$")


def check_site(model: MoETransformer, site: str, model_name: str) -> tuple[str, int]:
    match = SITE_PATTERN.match(site)
    if match is None:
        raise UserInputError(f"site {site!r} of model {model_name!r} is not resid_pre.<i>, resid_mid.<i> or "
                             "resid_post.<i>")
    kind, index = match.group(1), int(match.group(2))
    if index >= len(model.blocks):
        raise UserInputError(f"site {site!r}: model {model_name!r} has only {len(model.blocks)} blocks (0.."
                             f"{len(model.blocks) - 1})")
    return kind, index


class SitesCaptured(Exception):
    """Raised by the last capture hook to end a forward pass early (caught by ``harvest_batch``)."""


@contextlib.contextmanager
def capture_sites(model: MoETransformer, sites: list[str], out: dict[str, torch.Tensor],
                  stop_when_done: bool = False) -> Iterator[None]:
    """Forward hooks that store the residual stream at ``sites`` into ``out`` (by site name); with
    ``stop_when_done`` the hook that stores the last missing site raises ``SitesCaptured``."""
    wanted = set(sites)

    def store(site: str, value: torch.Tensor) -> None:
        out[site] = value
        if stop_when_done and wanted <= out.keys():
            raise SitesCaptured

    handles = []
    for site in sites:
        kind, index = check_site(model, site, "?")
        block = model.blocks[index]
        if kind == "resid_pre":
            handles.append(block.register_forward_pre_hook(lambda m, args, s=site: store(s, args[0])))
        elif kind == "resid_mid":
            handles.append(block.mlp_norm.register_forward_pre_hook(lambda m, args, s=site: store(s, args[0])))
        else:
            handles.append(block.register_forward_hook(lambda m, args, output, s=site: store(s, output[0])))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def harvest_batch(models: dict[str, MoETransformer], sites: dict[str, list[str]], tokens_BS: torch.Tensor,
                  dtype: torch.dtype) -> torch.Tensor:
    """[B*S, C] activations of every (model, site), in the cache's column order and dtype."""
    columns = []
    for name, model in models.items():
        captured: dict[str, torch.Tensor] = {}
        with capture_sites(model, sites[name], captured, stop_when_done=True):
            try:
                model(tokens_BS)
            except SitesCaptured:
                pass
        columns += [captured[site].reshape(tokens_BS.numel(), -1).to(dtype) for site in sites[name]]
    return torch.cat(columns, dim=1)


class ActivationHarvestModule(pl.LightningModule):
    """Runs two (or more) models on the same token sequences of a ``DomainDataModule`` (its predict
    loader: every domain in order, ``batch_size`` sequences per shard) and writes their residual-stream
    activations at the chosen sites to a sharded memory-mapped cache.

    Args:
        models: Model name -> checkpoint (``.ckpt`` of ``lit_moe.LanguageModelingModule``), e.g.
            ``{moe: runs/analysis_moe/checkpoints/last.ckpt, dense: runs/analysis_dense/checkpoints/last.ckpt}``.
        sites: Model name -> sites to store (``resid_pre.<i>``, ``resid_mid.<i>``, ``resid_post.<i>``).
        cache_dir: Folder of the cache; re-running with the same folder resumes an interrupted harvest.
        dtype: Storage precision, ``bfloat16`` or ``float16``.
    """

    def __init__(self, models: dict[str, str], sites: dict[str, list[str]], cache_dir: str,
                 dtype: Literal["bfloat16", "float16"] = "bfloat16") -> None:
        super().__init__()
        self.save_hyperparameters()
        if set(models) != set(sites):
            raise UserInputError(f"models {sorted(models)} and sites {sorted(sites)} must name the same models")
        missing = {name: path for name, path in models.items() if not Path(path).expanduser().is_file()}
        if missing:
            raise UserInputError(f"model checkpoint(s) not found: {missing}")
        self.model_sources = dict(models)
        self.sites = {name: list(names) for name, names in sites.items()}
        self.cache_dir = cache_dir
        self.dtype_name = dtype
        self.models = nn.ModuleDict()
        self.writer = None
        self.shards_written = 0

    def configure_model(self) -> None:
        if len(self.models) == 0:
            for name, source in self.model_sources.items():
                model = load_language_model(source)
                for site in self.sites[name]:
                    check_site(model, site, name)
                self.models[name] = model

    def on_predict_start(self) -> None:
        datamodule = self.trainer.datamodule
        if self.trainer.world_size > 1:
            raise UserInputError("the harvest runs on one device: set trainer.devices=1")
        vocab = min(model.config.vocab_size for model in self.models.values())
        if datamodule.vocab_size > vocab:
            raise UserInputError(f"the domains' tokenizer has {datamodule.vocab_size} tokens but a model only {vocab}: "
                                 "the models must share the tokenizer (set data.tokenizer)")
        sequences = list(datamodule.sequences.values())
        tokens_NS = torch.cat(sequences)[:, :-1]
        domains_N = torch.cat([torch.full((len(s),), i) for i, s in enumerate(sequences)])
        widths = {name: model.config.d_model for name, model in self.models.items()}
        meta = harvest_meta(self.model_sources, self.sites, widths, self.dtype_name, datamodule.seq_len,
                            len(tokens_NS), datamodule.batch_size, datamodule.tokenizer_spec, datamodule.domain_names)
        self.writer = ActivationCacheWriter(self.cache_dir, meta, tokens_NS, domains_N)

    def predict_step(self, batch, batch_idx: int) -> int:
        """Writes shard ``batch_idx`` (unless an earlier, interrupted run did) and returns its index."""
        if self.writer.has_shard(batch_idx):
            return batch_idx  # written by an earlier (interrupted) run: the models do not run
        (sequences_BL,) = batch
        values_TC = harvest_batch(dict(self.models.items()), self.sites, sequences_BL[:, :-1],
                                  torch.bfloat16 if self.dtype_name == "bfloat16" else torch.float16)
        self.writer.write_shard(batch_idx, values_TC)
        self.shards_written += 1
        return batch_idx

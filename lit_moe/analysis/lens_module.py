"""``cli.py test`` entry point of the MoE Lens: routing shares, early decoding, top-m perplexity.

    python cli.py test --config configs/analysis/lens.yaml --model.checkpoint runs/analysis_moe/checkpoints/last.ckpt

Shape legend: B batch, L = S + 1 tokens per sequence, S sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning.pytorch as pl

from lit_moe.analysis.lens import VARIANTS, lens_forward, restrict_to_top_m, sequence_nll
from lit_moe.analysis.lens_report import LensAccumulator, write_tables
from lit_moe.analysis.loading import load_language_model
from lit_moe.analysis.plots import (
    early_decoding_figure,
    figure_to_array,
    perplexity_figure,
    routing_heatmap,
    save_figure,
)
from lit_moe.errors import UserInputError


def run_folder(trainer: pl.Trainer, output_dir: Optional[str]) -> Path:
    """Where an analysis writes its tables and PNGs: ``output_dir`` or the logger's version folder."""
    if output_dir:
        return Path(output_dir)
    return Path(trainer.log_dir or trainer.default_root_dir)


class MoELensModule(pl.LightningModule):
    """Runs the MoE Lens over the test dataloaders of a ``lit_moe.analysis.DomainDataModule`` (one per
    domain) and writes ``lens.json``, ``routing_shares.csv``, ``coverage.csv``, ``early_decoding.csv``,
    ``perplexity.csv`` and PNG plots to the run folder, scalars and images to TensorBoard.

    Args:
        checkpoint: The model to analyse: a ``.ckpt`` of ``lit_moe.LanguageModelingModule`` (loaded by
            ``lit_moe.analysis.load_language_model``).
        output_dir: Folder for the tables and PNGs; ``None`` uses the logger's run folder.
    """

    def __init__(self, checkpoint: str, output_dir: Optional[str] = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.checkpoint = checkpoint
        self.output_dir = output_dir
        self.model = None
        self.accumulator: Optional[LensAccumulator] = None
        self.report: Optional[dict] = None
        if not Path(checkpoint).expanduser().exists():
            raise UserInputError(f"model checkpoint {checkpoint} not found: pass the .ckpt written by `cli.py fit`")

    def configure_model(self) -> None:
        if self.model is None:
            self.model = load_language_model(self.checkpoint)

    def _domain_names(self) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        names = getattr(datamodule, "domain_names", None)
        if names is None:
            raise UserInputError("the MoE Lens needs data: lit_moe.analysis.DomainDataModule (one test loader per "
                                 "domain)")
        return list(names)

    def on_test_start(self) -> None:
        layers = self.model.moe_layers()
        if not layers:
            raise UserInputError(f"{self.checkpoint} has no MoE layer (first_k_dense == n_layers): the MoE Lens "
                                 "needs a model with routed experts")
        if self.trainer.world_size > 1:
            raise UserInputError("the MoE Lens runs on one device: set trainer.devices=1")
        vocab = getattr(self.trainer.datamodule, "vocab_size", None)
        if vocab is not None and vocab > self.model.config.vocab_size:
            raise UserInputError(f"the domains' tokenizer has {vocab} tokens but the model only "
                                 f"{self.model.config.vocab_size}: set data.tokenizer to the tokenizer the model was "
                                 "trained with")
        first = next(iter(layers.values()))
        self.top_k = max(layer.top_k for layer in layers.values())
        self.accumulator = LensAccumulator(sorted(layers), first.num_experts, self.top_k)
        self.domains = self._domain_names()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        (sequences_BL,) = batch
        inputs_BS, targets_BS = sequences_BL[:, :-1], sequences_BL[:, 1:]
        domain = self.domains[dataloader_idx]
        lens = lens_forward(self.model, inputs_BS)
        self.accumulator.add_pass(domain, lens)
        full_nll = float(sequence_nll(lens.logits_BSV, targets_BS))
        for m in range(1, self.top_k + 1):
            for renormalise in (False, True):
                if m == self.top_k:
                    nll = full_nll
                else:
                    with restrict_to_top_m(self.model, m, renormalise):
                        nll = float(sequence_nll(self.model(inputs_BS).logits_BSV, targets_BS))
                self.accumulator.add_nll(domain, m, renormalise, nll, targets_BS.numel())

    def on_test_epoch_end(self) -> None:
        self.report = self.accumulator.report()
        self.report["checkpoint"] = str(self.checkpoint)
        folder = run_folder(self.trainer, self.output_dir)
        write_tables(self.report, folder)
        figures = {f"routing/{domain}": routing_heatmap(self.report, domain) for domain in self.report["domains"]}
        figures["early_decoding"] = early_decoding_figure(self.report)
        figures["perplexity"] = perplexity_figure(self.report)
        for tag, figure in figures.items():
            save_figure(figure, folder / f"{tag.replace('/', '_')}.png")
        self._log_tensorboard(figures)

    def _log_tensorboard(self, figures: dict) -> None:
        writer = getattr(self.logger, "experiment", None) if self.logger is not None else None
        if writer is None or not hasattr(writer, "add_image"):
            return
        for tag, figure in figures.items():
            writer.add_image(f"lens/{tag}", figure_to_array(figure), global_step=0, dataformats="HWC")
        for domain, result in self.report["domains"].items():
            for variant in VARIANTS:
                for m, value in enumerate(result["perplexity"][variant], start=1):
                    writer.add_scalar(f"lens/{domain}/ppl_{variant}_top{m}", value, global_step=0)
            # per-layer curves: the TensorBoard step axis is the layer index
            for layer, values in result["layers"].items():
                step = int(layer)
                writer.add_scalar(f"lens/{domain}/coverage_50_by_layer", values["coverage_50"], global_step=step)
                writer.add_scalar(f"lens/{domain}/max_share_by_layer", max(values["shares"]), global_step=step)
                for variant in VARIANTS:
                    writer.add_scalar(f"lens/{domain}/cos_top1_{variant}_by_layer", values["cos_to_topK"][variant][0],
                                      global_step=step)
                    writer.add_scalar(f"lens/{domain}/agree_top1_{variant}_by_layer", values["agree_full"][variant][0],
                                      global_step=step)
        writer.flush()

    def configure_optimizers(self):
        return None

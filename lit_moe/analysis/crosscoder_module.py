"""``cli.py fit`` entry point of the BatchTopK crosscoder over a harvested activation cache.

    python cli.py fit --config configs/analysis/crosscoder.yaml

Shape legend: B batch (tokens), M models, D width, L latents.
"""

from __future__ import annotations

import csv
import json
from typing import Optional

import lightning.pytorch as pl
import torch

from lit_moe.analysis.crosscoder import BatchTopKCrosscoder
from lit_moe.analysis.crosscoder_metrics import (
    CrosscoderEvaluation,
    contexts_markdown,
    feature_classes,
    log10_density_by_class,
    sample_features,
)
from lit_moe.analysis.domains import load_tokenizer
from lit_moe.analysis.lens_module import run_folder
from lit_moe.analysis.plots import figure_to_array, histogram_figure, save_figure
from lit_moe.errors import UserInputError


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, decay_start_fraction: float) -> float:
    """Linear warmup, constant, then linear decay to 0 from ``decay_start_fraction`` of the run."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_start = int(total_steps * decay_start_fraction)
    if step >= decay_start and total_steps > decay_start:
        return max(0.0, (total_steps - step) / (total_steps - decay_start))
    return 1.0


class CrosscoderModule(pl.LightningModule):
    """Trains a ``BatchTopKCrosscoder`` on paired activations from ``ActivationCacheDataModule`` and
    evaluates it on the held-out tokens at every validation: FVE per model, L0, dead fraction,
    relative decoder norms, feature classes with log-density histograms, top-activating contexts.

    Args:
        dict_size: Latents of the crosscoder.
        k: Average active latents per token (BatchTopK keeps batch_size * k per batch).
        num_shared: Designated shared latents (one decoder vector for all models).
        learning_rate: Adam learning rate.
        warmup_steps: Linear learning-rate warmup steps.
        decay_start_fraction: The learning rate decays linearly to 0 from this fraction of the run.
        aux_alpha: Weight of the auxiliary dead-latent loss (reference 1/32).
        k_aux: Dead latents used per token by the auxiliary loss; ``None`` means half the input width.
        dead_tokens: A latent is dead after this many training tokens without activating (reference 10M).
        threshold_beta: EMA decay of the inference threshold (the smallest kept score).
        threshold_start_step: Step from which the threshold is learned (reference 1000).
        init_sample_tokens: Training tokens read once to set the input scales (E||a||² = D) and b_dec.
        features_per_class: Features per class whose top-activating contexts are shown.
        contexts_per_feature: Contexts shown per feature.
        context_tokens: Tokens of context before the activating token.
        output_dir: Folder for tables and PNGs; ``None`` uses the logger's run folder.
    """

    def __init__(
        self,
        dict_size: int = 2048,
        k: int = 32,
        num_shared: int = 128,
        learning_rate: float = 1e-3,
        warmup_steps: int = 100,
        decay_start_fraction: float = 0.8,
        aux_alpha: float = 1 / 32,
        k_aux: Optional[int] = None,
        dead_tokens: int = 10_000_000,
        threshold_beta: float = 0.999,
        threshold_start_step: int = 1000,
        init_sample_tokens: int = 16384,
        features_per_class: int = 4,
        contexts_per_feature: int = 5,
        context_tokens: int = 32,
        output_dir: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 1 <= k <= dict_size or not 0 <= num_shared <= dict_size:
            raise UserInputError(f"need 1 <= k ({k}) <= dict_size ({dict_size}) and 0 <= num_shared ({num_shared}) "
                                 "<= dict_size")
        self.crosscoder: Optional[BatchTopKCrosscoder] = None
        self.evaluation: Optional[CrosscoderEvaluation] = None
        self.last_results: Optional[dict] = None

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        if self.crosscoder is not None:
            return
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "sites"):
            raise UserInputError("the crosscoder trains on a harvested cache: use data: "
                                 "lit_moe.analysis.ActivationCacheDataModule")
        datamodule.setup("fit")
        self.site_names = list(datamodule.sites)
        self.model_names = [site.split("/")[0] for site in self.site_names]
        hp = self.hparams
        self.crosscoder = BatchTopKCrosscoder(len(self.site_names), datamodule.width, hp.dict_size, hp.k, hp.num_shared)
        self.register_buffer("tokens_since_fired_L", torch.zeros(hp.dict_size, dtype=torch.long))
        self.k_aux = hp.k_aux or (len(self.site_names) * datamodule.width) // 2

    def on_fit_start(self) -> None:
        if self.global_step > 0:
            return  # resumed: scales and biases come from the checkpoint
        datamodule = self.trainer.datamodule
        count = min(self.hparams.init_sample_tokens, datamodule.train_rows.numel())
        rows = datamodule.train_rows[torch.randperm(datamodule.train_rows.numel(),
                                                    generator=torch.Generator().manual_seed(0))[:count]]
        a_BMD = datamodule.cache.activations(rows.sort().values, self.site_names).to(self.device)
        with torch.no_grad():
            mean_sq_M = a_BMD.pow(2).sum(-1).mean(0)
            self.crosscoder.input_scale_M.copy_((a_BMD.shape[-1] / mean_sq_M.clamp_min(1e-12)).sqrt())
            self.crosscoder.b_dec_MD.copy_(self.crosscoder.scale_inputs(a_BMD).mean(0))

    # ------------------------------------------------------------------ train
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        a_BMD, _ = batch
        crosscoder = self.crosscoder
        a_BMD = crosscoder.scale_inputs(a_BMD)
        recon_BMD, codes = crosscoder(a_BMD)
        error_BMD = a_BMD - recon_BMD
        mse = error_BMD.pow(2).sum((1, 2)).mean()
        with torch.no_grad():
            fired_L = torch.bincount(codes.cols_N, minlength=crosscoder.dict_size) > 0
            self.tokens_since_fired_L += a_BMD.shape[0]
            self.tokens_since_fired_L[fired_L] = 0
            dead_L = self.tokens_since_fired_L >= self.hparams.dead_tokens
        aux = crosscoder.auxiliary_loss(a_BMD, error_BMD, dead_L, self.k_aux)
        loss = mse + self.hparams.aux_alpha * aux
        if self.global_step >= self.hparams.threshold_start_step:
            crosscoder.update_threshold(codes, self.hparams.threshold_beta)
        with torch.no_grad():
            spread_M = (a_BMD - a_BMD.mean(0)).pow(2).sum((0, 2))
            fve_M = 1 - error_BMD.pow(2).sum((0, 2)) / spread_M.clamp_min(1e-12)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/mse", mse)
        self.log("train/aux_loss", aux)
        for name, value in zip(self.model_names, fve_M):
            self.log(f"train/fve/{name}", value)
        self.log("train/l0", codes.values_N.numel() / a_BMD.shape[0])
        self.log("train/dead_fraction", dead_L.float().mean())
        self.log("train/threshold", crosscoder.threshold)
        return loss

    # ------------------------------------------------------------- evaluate
    def on_validation_epoch_start(self) -> None:
        relative_L = self.crosscoder.relative_decoder_norms().detach().cpu()
        self._classes = feature_classes(relative_L, self.crosscoder.num_shared, self.model_names)
        alive_L = (self.tokens_since_fired_L < self.hparams.dead_tokens).cpu()
        tracked_F = sample_features(self._classes, self.hparams.features_per_class, alive_L)
        self.evaluation = CrosscoderEvaluation(self.crosscoder.num_models, self.crosscoder.d_in,
                                               self.crosscoder.dict_size, tracked_F, self.hparams.contexts_per_feature)

    def validation_step(self, batch, batch_idx: int) -> None:
        a_BMD, rows_B = batch
        a_BMD = self.crosscoder.scale_inputs(a_BMD)
        recon_BMD, codes = self.crosscoder(a_BMD, use_threshold=True)
        self.evaluation.update(a_BMD, recon_BMD, codes, rows_B)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        results = self.evaluation.results()
        relative_L = self.crosscoder.relative_decoder_norms().detach().cpu()
        classes = self._classes
        densities = log10_density_by_class(results["density_L"], classes)
        counts = {name: classes.count(name) for name in dict.fromkeys(classes)}
        scalars = {f"val/fve/{name}": float(value) for name, value in zip(self.model_names, results["fve_M"])}
        scalars.update({"val/fve_mean": float(results["fve_M"].mean()), "val/l0": float(results["l0"]),
                        "val/dead_fraction": float(results["dead_fraction"])})
        scalars.update({f"val/class_fraction/{name.replace(' ', '_')}": count / len(classes)
                        for name, count in counts.items()})
        self._log_scalars(scalars)
        self.last_results = {
            "step": self.global_step, "sites": self.site_names,
            "fve": {n: float(v) for n, v in zip(self.model_names, results["fve_M"])},
            "l0": float(results["l0"]), "dead_fraction": float(results["dead_fraction"]),
            "threshold": float(self.crosscoder.threshold), "class_counts": counts,
            "mean_log10_density": {n: float(v.mean()) if v.size else None for n, v in densities.items()},
        }
        self._write_outputs(relative_L, results, classes, densities)

    def _log_scalars(self, scalars: dict[str, float]) -> None:
        """At the optimizer step the crosscoder was evaluated at (the step of its histograms and images);
        also in ``trainer.callback_metrics``."""
        writer = getattr(self.logger, "experiment", None) if self.logger is not None else None
        for tag, value in scalars.items():
            self.log(tag, value, logger=writer is None or not hasattr(writer, "add_scalar"))
            if writer is not None and hasattr(writer, "add_scalar"):
                writer.add_scalar(tag, value, global_step=self.global_step)

    def _write_outputs(self, relative_L, results, classes, densities) -> None:
        folder = run_folder(self.trainer, self.hparams.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "crosscoder_metrics.json").write_text(json.dumps(self.last_results, indent=1))
        with (folder / "features.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["feature", "class", "relative_decoder_norm", "density"])
            for index, (r, d) in enumerate(zip(relative_L.tolist(), results["density_L"].tolist())):
                writer.writerow([index, classes[index], r, d])
        a, b = self.model_names[0], self.model_names[-1]
        norm_figure = histogram_figure({"all features": relative_L.numpy()},
                                       f"relative decoder norm ||d_{b}|| / (||d_{a}|| + ||d_{b}||)",
                                       f"0: {a}-only, 0.5: shared, 1: {b}-only", bins=40, value_range=(0.0, 1.0))
        density_figure = histogram_figure(densities, "log10 feature density", "feature density by class", bins=30)
        save_figure(norm_figure, folder / "relative_decoder_norm.png")
        save_figure(density_figure, folder / "log_density_by_class.png")
        tokenizer = load_tokenizer(self.trainer.datamodule.cache.meta.tokenizer)
        markdown = contexts_markdown(self.evaluation, classes, relative_L, results["density_L"],
                                     self.trainer.datamodule.cache, tokenizer, self.hparams.context_tokens)
        (folder / "top_contexts.md").write_text(markdown)
        writer = getattr(self.logger, "experiment", None) if self.logger is not None else None
        if writer is None or not hasattr(writer, "add_image"):
            return
        step = self.global_step
        writer.add_histogram("crosscoder/relative_decoder_norm", relative_L, global_step=step)
        for name, values in densities.items():
            if values.size:
                writer.add_histogram(f"crosscoder/log10_density/{name.replace(' ', '_')}", values, global_step=step)
        writer.add_image("crosscoder/relative_decoder_norm", figure_to_array(norm_figure), step, dataformats="HWC")
        writer.add_image("crosscoder/log_density_by_class", figure_to_array(density_figure), step, dataformats="HWC")
        writer.add_text("crosscoder/top_contexts", markdown, global_step=step)

    # ------------------------------------------------------------ optimizer
    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.crosscoder.parameters(), lr=self.hparams.learning_rate, betas=(0.9, 0.999))
        total = int(self.trainer.estimated_stepping_batches)
        hp = self.hparams
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(step, hp.warmup_steps, total, hp.decay_start_fraction))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

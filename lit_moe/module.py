"""LightningModule for MoE language modelling: losses, metrics, optimizer, the per-step router-state
update and non-finite-step skipping. Dashboards and router-gradient fidelity are callbacks
(``lit_moe.callbacks``); activation checkpointing and FSDP2 are applied in ``parallelize``."""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from dataclasses import asdict, replace
from typing import Optional

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.text import Perplexity

from lit_moe.errors import TrainingAbortedError, UserInputError
from lit_moe.hf.calibrate import calibrate_default_vectors
from lit_moe.hf.pretrained import build_from_hf, check_tokenizer, pretrained_config
from lit_moe.hf.upcycle import UpcycleSpec
from lit_moe.model import MoEStats, MoETransformer, MoETransformerConfig
from lit_moe.model.moe_layer import sum_stats
from lit_moe.parallelize import parallelize


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warmup from 0 to 1, then cosine decay to ``min_lr_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _capture_rng_states() -> dict:
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                   "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)}
    # Plain tensors and builtins only, so checkpoints load with torch.load(weights_only=True).
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class LanguageModelingModule(pl.LightningModule):
    """Trains an MoE decoder-only transformer on next-token prediction.

    Args:
        config: Model architecture and router (see ``MoETransformerConfig``).
        tokenizer_vocab_size: Vocabulary of the tokenizer; linked automatically from
            ``data.vocab_size`` by cli.py. The model's ``config.vocab_size`` defaults to it and must
            not be smaller.
        learning_rate: Peak AdamW learning rate.
        min_lr_ratio: Final learning rate of the cosine decay as a fraction of the peak.
        warmup_steps: Optimizer steps of linear warmup.
        decay_steps: Optimizer steps over which to decay (warmup included); ``None`` uses the
            trainer's total (``max_steps`` or epochs × batches).
        weight_decay: AdamW decoupled weight decay, applied to matrices only (not norms/biases).
        betas: AdamW betas.
        activation_checkpointing: Recompute each transformer block in the backward pass.
        max_consecutive_nonfinite: A step whose loss or gradient is not finite is skipped (and counted
            as ``train/skipped_steps``); after this many in a row the run saves a checkpoint and stops.
        meta_init: Under FSDP2 (ModelParallelStrategy), build the model on the meta device and
            initialise each shard in place (fast, little memory). ``False`` builds and initialises the
            full model on every rank first: the same initial weights as a single-process run.
        init_from_hf: A local Hugging Face folder (Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE, Llama, Qwen3) to
            continue training: the architecture comes from its ``config.json`` (``config`` then only
            supplies the training-side fields ``router``, ``default_beta``, ``default_mode``,
            ``aux_loss_coef``, ``z_loss_coef``, ``bias_update_rate``, ``backend``) and the weights are
            loaded into the meta-built (FSDP2-sharded) model in ``configure_model``. Tokenize with the
            folder's tokenizer (``data.init_args.tokenizer: <same folder>``).
        calibration_batches: With ``init_from_hf`` and ``router: default``, start the default vectors
            from the mean raw expert outputs over this many training batches (before step 0, no
            update) instead of zero; 0 keeps zero (see ``lit_moe/hf/calibrate.py``).
        upcycle: With ``init_from_hf`` pointing at a dense Llama / Qwen3 folder: build an MoE whose
            experts are copies (or fine-grained pieces) of each MLP (see ``lit_moe.hf.upcycle.UpcycleSpec``).
    """

    def __init__(
        self,
        config: MoETransformerConfig = MoETransformerConfig(),  # noqa: B008 (CLI schema default)
        tokenizer_vocab_size: Optional[int] = None,
        learning_rate: float = 1e-3,
        min_lr_ratio: float = 0.1,
        warmup_steps: int = 100,
        decay_steps: Optional[int] = None,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        activation_checkpointing: bool = False,
        max_consecutive_nonfinite: int = 5,
        meta_init: bool = True,
        init_from_hf: Optional[str] = None,
        calibration_batches: int = 0,
        upcycle: Optional[UpcycleSpec] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not learning_rate > 0:
            raise UserInputError(f"model.learning_rate={learning_rate} must be > 0 (e.g. 1e-3 for the tiny config)")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise UserInputError(f"model.min_lr_ratio={min_lr_ratio} must lie in [0, 1]")
        if warmup_steps < 0:
            raise UserInputError(f"model.warmup_steps={warmup_steps} must be >= 0")
        # --- init_from_hf (lit_moe.hf): architecture from the pretrained folder --------------------
        self.init_from_hf, self.calibration_batches, self.upcycle = init_from_hf, calibration_batches, upcycle
        if init_from_hf is not None or upcycle is not None:
            config = pretrained_config(init_from_hf, config, tokenizer_vocab_size, upcycle)
        # --- end init_from_hf ------------------------------------------------------------------------
        self.config = self._resolve_vocab(config, tokenizer_vocab_size)
        self.learning_rate = learning_rate
        self.min_lr_ratio = min_lr_ratio
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.activation_checkpointing = activation_checkpointing
        self.max_consecutive_nonfinite = max_consecutive_nonfinite
        self.meta_init = meta_init
        self.model: Optional[MoETransformer] = None
        self.skipped_steps = 0
        self._consecutive_nonfinite = 0
        self._last_loss: Optional[torch.Tensor] = None
        self.val_perplexity = Perplexity()
        self._pending_stats: dict[int, list[MoEStats]] = defaultdict(list)
        # This optimizer step's routing statistics, summed over micro-batches and ranks (read by the
        # routing dashboard); empty after a skipped step.
        self.step_router_stats: dict[int, MoEStats] = {}

    @staticmethod
    def _resolve_vocab(config: MoETransformerConfig, tokenizer_vocab_size: Optional[int]) -> MoETransformerConfig:
        if config.vocab_size is None:
            if tokenizer_vocab_size is None:
                raise UserInputError("the model's vocabulary size is unknown: set model.config.vocab_size or use a "
                                     "datamodule with a vocab_size attribute (linked to model.tokenizer_vocab_size)")
            return replace(config, vocab_size=tokenizer_vocab_size)
        if tokenizer_vocab_size is not None and tokenizer_vocab_size > config.vocab_size:
            raise UserInputError(
                f"the tokenizer has {tokenizer_vocab_size} tokens but model.config.vocab_size is {config.vocab_size}: "
                f"set model.config.vocab_size >= {tokenizer_vocab_size} (or leave it unset to follow the tokenizer)")
        return config

    def setup(self, stage: str) -> None:
        """Refuse a datamodule whose sequences the model cannot hold, before any step runs (the CLI
        checks this earlier, before the run's folder is written: ``check_datamodule``)."""
        self.check_datamodule(getattr(self.trainer, "datamodule", None))

    def check_datamodule(self, datamodule) -> None:
        """One error line if ``datamodule``'s sequences are longer than the model's position tables."""
        seq_len = getattr(datamodule, "seq_len", None)
        if isinstance(seq_len, int) and seq_len > self.config.max_seq_len:
            raise UserInputError(
                f"data.seq_len={seq_len} exceeds model.config.max_seq_len={self.config.max_seq_len}: raise "
                f"model.config.max_seq_len to >= {seq_len} or lower data.seq_len")

    # ----------------------------------------------------------------- model
    def configure_model(self) -> None:
        """Build the model; under ModelParallelStrategy build it on the meta device, shard every
        block with FSDP2 and initialise the shards in place."""
        if self.model is not None:
            return
        mesh = self.device_mesh
        # --- init_from_hf (lit_moe.hf): meta init + shard + stream the pretrained weights -----------
        if self.init_from_hf is not None:
            check_tokenizer(self.init_from_hf, self.trainer.datamodule)
            param_dtype = torch.bfloat16 if self.trainer.precision in ("bf16-mixed", "bf16-true") else None
            self.model = build_from_hf(
                self.init_from_hf, self.config,
                lambda model: parallelize(model, mesh, self.activation_checkpointing, param_dtype=param_dtype),
                self.trainer.strategy.root_device, self.upcycle)
            return
        # --- end init_from_hf ------------------------------------------------------------------------
        if mesh is None:
            self.model = parallelize(MoETransformer(self.config),
                                     activation_checkpointing=self.activation_checkpointing)
            return
        param_dtype = torch.bfloat16 if self.trainer.precision in ("bf16-mixed", "bf16-true") else None
        if not self.meta_init:
            self.model = parallelize(MoETransformer(self.config), mesh, self.activation_checkpointing, param_dtype)
            return
        with torch.device("meta"):
            model = MoETransformer(self.config)
        parallelize(model, mesh, self.activation_checkpointing, param_dtype=param_dtype)
        model.to_empty(device=self.trainer.strategy.root_device)
        model.reset_parameters()
        self.model = model

    def forward(self, tokens_BS: torch.Tensor):
        return self.model(tokens_BS)

    # ---------------------------------------------------------------- steps
    def _lm_loss(self, logits_BSV: torch.Tensor, targets_BS: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_BSV.float().flatten(0, 1), targets_BS.flatten())

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs_BS, targets_BS = batch
        output = self.model(inputs_BS)
        lm_loss = self._lm_loss(output.logits_BSV, targets_BS)
        aux_loss = output.auxiliary_loss()
        for index, stats in output.moe_stats.items():
            self._pending_stats[index].append(stats)
        self.log("train/loss", lm_loss, prog_bar=True)
        if output.moe_stats and (self.config.aux_loss_coef > 0 or self.config.z_loss_coef > 0):
            self.log("train/aux_loss", aux_loss)
        self._last_loss = (lm_loss + aux_loss).detach()
        return lm_loss + aux_loss

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs_BS, targets_BS = batch
        logits_BSV = self.model(inputs_BS).logits_BSV.float()
        self.log("val/loss", self._lm_loss(logits_BSV, targets_BS), prog_bar=True, sync_dist=True)
        self.val_perplexity.update(logits_BSV, targets_BS)
        self.log("val/ppl", self.val_perplexity, prog_bar=True)

    # ------------------------------------------------------- optimizer step
    def _gradient_norm(self) -> torch.Tensor:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # DTensor under FSDP2

    def on_before_optimizer_step(self, optimizer) -> None:
        """After backward (and AMP unscaling), before clipping and the update: skip a non-finite step by
        dropping its gradients (AdamW leaves parameters without a gradient untouched, and a GradScaler
        still sees the inf it recorded), otherwise apply this step's router-state update."""
        grad_norm = self._gradient_norm()
        loss = self._last_loss if self._last_loss is not None else grad_norm
        if not bool(torch.isfinite(grad_norm) & torch.isfinite(loss)):
            self._skip_nonfinite_step(optimizer)
            return
        self._consecutive_nonfinite = 0
        self.log("train/grad_norm", grad_norm)
        self.log("train/skipped_steps", float(self.skipped_steps))
        self.log("train/lr", optimizer.param_groups[0]["lr"])
        self._apply_router_updates()

    def _skip_nonfinite_step(self, optimizer) -> None:
        self.skipped_steps += 1
        self._consecutive_nonfinite += 1
        self._pending_stats.clear()
        self.step_router_stats = {}
        optimizer.zero_grad(set_to_none=True)
        self.log("train/skipped_steps", float(self.skipped_steps))
        if 0 < self.max_consecutive_nonfinite <= self._consecutive_nonfinite:
            path = os.path.join(self.trainer.default_root_dir, "nonfinite-stop.ckpt")
            if self.trainer.checkpoint_callback is not None and self.trainer.checkpoint_callback.dirpath:
                path = os.path.join(self.trainer.checkpoint_callback.dirpath, "nonfinite-stop.ckpt")
            self.trainer.save_checkpoint(path)
            raise TrainingAbortedError(
                f"{self._consecutive_nonfinite} consecutive steps had a non-finite loss or gradient (global step "
                f"{self.global_step}); saved the last good state to {path}. Lower the learning rate, enable "
                f"gradient clipping or check the data, then resume with --ckpt_path {path}")

    def _all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            tensor = tensor.clone()
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def _apply_router_updates(self) -> None:
        """Sum this step's routing statistics over micro-batches and ranks and update the Default-MoE
        default vectors and balancing biases (identically on every rank)."""
        if not self._pending_stats:
            self.step_router_stats = {}
            return
        self.step_router_stats = {i: sum_stats(stats, self._all_reduce_sum) for i, stats in self._pending_stats.items()}
        self._pending_stats.clear()
        self.model.update_router_state(self.step_router_stats)

    # ----------------------------------------------------------- checkpoints
    def on_train_start(self) -> None:
        # --- init_from_hf (lit_moe.hf): Default-MoE vectors from a calibration pass -----------------
        if self.init_from_hf is not None and self.calibration_batches > 0 and self.trainer.ckpt_path is None:
            batches = (batch[0].to(self.device) for batch, _ in zip(self.trainer.train_dataloader,
                                                                     range(self.calibration_batches)))
            calibrate_default_vectors(self.model, batches, self._all_reduce_sum)
        # --- end init_from_hf ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = _capture_rng_states()
        checkpoint["lit_moe_config"] = asdict(self.config)  # the resolved architecture (HF export)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore RNG states; refuse a checkpoint of a different architecture, naming the keys."""
        if "rng_states" in checkpoint:
            _restore_rng_states(checkpoint["rng_states"])
        saved = checkpoint.get("state_dict")
        if not saved or self.model is None:
            return  # sharded (distributed) checkpoints are checked by torch.distributed.checkpoint
        own = self.state_dict()
        missing = sorted(own.keys() - saved.keys())
        unexpected = sorted(saved.keys() - own.keys())
        reshaped = sorted(f"{k} {tuple(saved[k].shape)} vs {tuple(own[k].shape)}"
                          for k in own.keys() & saved.keys() if tuple(saved[k].shape) != tuple(own[k].shape))
        if not (missing or unexpected or reshaped):
            return
        saved_config = checkpoint.get("hyper_parameters", {}).get("config")
        differing = []
        if saved_config is not None:
            saved_fields = vars(saved_config) if not isinstance(saved_config, dict) else saved_config
            differing = [f"{k}: checkpoint {saved_fields[k]!r} vs config {getattr(self.config, k)!r}"
                         for k in saved_fields
                         if hasattr(self.config, k) and saved_fields[k] != getattr(self.config, k)]

        def shorten(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")

        parts = [f"missing in checkpoint: {shorten(missing)}" if missing else "",
                 f"not in this model: {shorten(unexpected)}" if unexpected else "",
                 f"shape mismatch (checkpoint vs model): {shorten(reshaped)}" if reshaped else "",
                 f"differing model config: {shorten(differing)}" if differing else ""]
        raise UserInputError("the checkpoint was saved from a different model configuration; "
                             + "; ".join(p for p in parts if p)
                             + ". Use the config the checkpoint was trained with (its hparams.yaml / config.yaml)")

    # ------------------------------------------------------------- optimizer
    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.learning_rate, betas=self.betas)
        total = self.decay_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, self.warmup_steps, total, self.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

"""Command-line entry point: ``lit fit --config configs/moe/tiny.yaml`` (the console script), or
``python cli.py fit ...`` from a checkout (a shim that calls :func:`main`).

Every LightningModule and LightningDataModule of the framework (and any of the user's own) is
selected by ``class_path`` in YAML; their typed ``__init__`` signatures are the config schema, so
``python cli.py fit --config X --print_config`` documents every knob.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_core.checkpointing.resume import prepare_run, usable_checkpoint
from lit_core.config_compose import compose_config_args
from lit_core.errors import FrameworkError
from lit_core.parser import FrameworkArgumentParser
from lit_core.preflight import check_model_against_data, check_output_folders
from lit_core.progress import StepProgressBar


class FrameworkCLI(LightningCLI):
    """LightningCLI with the framework's argument links, one-line parse errors, no abbreviated
    options (``FrameworkArgumentParser``) and a closing hint about the dashboards."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_class", FrameworkArgumentParser)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        # The tokenizer decides the vocabulary; the model learns it here (skipped automatically
        # for model/data classes that do not have these arguments, e.g. the video fine-tuner).
        parser.link_arguments("data.vocab_size", "model.init_args.tokenizer_vocab_size", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        """Lightning reads a ``--ckpt_path`` file's hyperparameters right after parsing: an unreadable
        file is replaced by its kept previous version (one warning) or refused (one error) first."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self._checked_ckpt_path = None
        if ckpt_path and Path(ckpt_path).exists():
            self._checked_ckpt_path = self.config[subcommand]["ckpt_path"] = str(usable_checkpoint(ckpt_path))
        super()._parse_ckpt_path()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """Runs right before ``trainer.<subcommand>``: the last checks of user input."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        check_output_folders(self.trainer)
        check_model_against_data(self.model, getattr(self, "datamodule", None))
        if subcommand == "fit":  # per-run version folders; a readable checkpoint to resume from
            checked = getattr(self, "_checked_ckpt_path", None)
            kwargs["ckpt_path"] = prepare_run(self.trainer, kwargs.get("ckpt_path"), checked)
        return kwargs

    def _instantiate_trainer(self, config, callbacks):
        """Step-counting progress bar by default (Lightning's shows ``Epoch 0/-2`` for step-bounded runs)."""
        from lightning.pytorch.callbacks import ProgressBar  # noqa: PLC0415

        given = list(config.get("callbacks") or []) + list(callbacks)
        if config.get("enable_progress_bar", True) is not False and not any(isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, StepProgressBar()]
        return super()._instantiate_trainer(config, callbacks)

    def _print_log_location(self) -> None:
        trainer = self.trainer
        if trainer.global_rank != 0 or trainer.logger is None:
            return
        log_dir = trainer.logger.log_dir or trainer.default_root_dir
        root = os.path.dirname(os.path.abspath(log_dir))
        print(f"\nTensorBoard logs: {os.path.abspath(log_dir)}", flush=True)
        print(f"View them with:   tensorboard --logdir {root}", flush=True)

    def after_fit(self) -> None:
        self._print_log_location()

    def after_predict(self) -> None:
        self._print_log_location()


def main(args: Optional[list[str]] = None) -> FrameworkCLI:
    """Run the CLI. Bad user input ends with one ``error: ...`` line on stderr and exit code 2; a run
    that aborts itself (after saving a checkpoint) with one such line and exit code 1."""
    try:
        return FrameworkCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=_composed(args),
        )
    except SIGTERMException as preempted:  # after PreemptionCheckpoint saved; 128 + SIGTERM for schedulers
        raise SystemExit(preempted.code if isinstance(preempted.code, int) and preempted.code else 143) from None
    except Exception as error:  # jsonargparse wraps errors raised while instantiating classes
        user_error = _find_user_error(error)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr, flush=True)
        raise SystemExit(user_error.exit_code) from None


def _composed(args: Optional[list[str]]) -> Optional[list[str]]:
    """Expand ``defaults`` blocks of ``--config`` files (lit_core.config_compose); from the command line
    the expanded arguments replace sys.argv (LightningCLI warns when given both)."""
    if args is not None:
        return compose_config_args(list(args))
    sys.argv[1:] = compose_config_args(sys.argv[1:])
    return None


def _find_user_error(error: Optional[BaseException]) -> Optional[FrameworkError]:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, FrameworkError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


if __name__ == "__main__":
    main()

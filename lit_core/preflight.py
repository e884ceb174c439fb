"""Checks the CLI runs after building the trainer and before any work: every problem found here is
one ``UserInputError`` line instead of a crash minutes into the run."""

from __future__ import annotations

import os
import tempfile

import lightning.pytorch as pl

from lit_core.errors import UserInputError


def output_folders(trainer: pl.Trainer) -> dict[str, str]:
    """The folders a run writes to: each logger's ``save_dir`` (else ``default_root_dir``), by the
    option that sets it."""
    folders = {}
    for index, logger in enumerate(trainer.loggers):
        save_dir = getattr(logger, "save_dir", None)
        if save_dir is not None:
            single = len(trainer.loggers) == 1
            option = "trainer.logger.init_args.save_dir" if single else f"trainer.logger[{index}].save_dir"
            folders.setdefault(str(save_dir), option)
    if not folders:
        folders[str(trainer.default_root_dir)] = "trainer.default_root_dir"
    return folders


def check_writable(folder: str, option: str) -> None:
    """Create ``folder`` if needed and write (then delete) a file in it; a failure is one line."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserInputError(f"{option} '{folder}' is not writable ({reason}): choose a folder you can write to "
                             f"with --{option}") from None


def check_output_folders(trainer: pl.Trainer) -> None:
    for folder, option in output_folders(trainer).items():
        check_writable(folder, option)


def check_model_against_data(model: pl.LightningModule, datamodule) -> None:
    """Runs ``model.check_datamodule(datamodule)`` when the model defines it: model/data mismatches
    (a sequence longer than the model holds, ...) are refused before the logger or a checkpoint folder
    writes anything."""
    check = getattr(model, "check_datamodule", None)
    if callable(check) and datamodule is not None:
        check(datamodule)

"""Which checkpoint a run resumes from, and which run folder it writes to.

Layout: every run of an experiment has its own folder ``<save_dir>/<name>/version_N/`` holding its
TensorBoard events and its ``checkpoints/`` (Lightning's ModelCheckpoint default), so two runs
started into the same ``save_dir``/``name`` never write the same file:

- a fresh run claims the next ``version_N`` with an atomic ``mkdir`` (two runs starting at the same
  moment get different numbers);
- ``--ckpt_path last`` resumes the experiment's most recent run: the newest ``last.ckpt`` under
  ``version_*/checkpoints/``;
- a resumed run continues in the version folder of the checkpoint it resumes from (its events are
  appended there, and TensorBoard hides the old run's events from the resumed step on), so one
  training run is one folder however often it was restarted;
- a checkpoint that is unreadable (torn, truncated, corrupt) is replaced by the previous one kept
  beside it (``last.prev.ckpt``, see ``AtomicCheckpointIO``) with one warning line naming both;
  without a readable previous one the run stops with one error line.

``prepare_run(trainer, ckpt_path)`` does all of this; the CLI calls it right before ``trainer.fit``.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Optional, Union

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_info, rank_zero_only

from lit_core.checkpointing.checkpoint_io import previous_path
from lit_core.errors import UserInputError

LAST = "last.ckpt"
VERSION = re.compile(r"^version_(\d+)$")


def experiment_root(logger) -> Optional[Path]:
    """``<save_dir>/<name>`` of a logger that keeps numbered versions there (TensorBoard, CSV)."""
    save_dir = getattr(logger, "save_dir", None)
    if save_dir is None or not hasattr(logger, "_version"):
        return None
    return Path(save_dir) / str(logger.name or "")


def last_checkpoints(root: Path) -> list[Path]:
    """Every run's newest checkpoint under ``root/version_*/checkpoints`` (its ``last.ckpt``, else the
    kept ``last.prev.ckpt``), oldest first by modification time."""
    found = []
    for folder in root.glob("version_*/checkpoints"):
        for name in (LAST, previous_path(LAST).name):
            if (folder / name).exists():
                found.append(folder / name)
                break
    return sorted(found, key=lambda p: p.stat().st_mtime)


def checkpoint_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be resumed from, or None. Checks a file's zip structure and the CRC of
    every record (a torn or bit-flipped file fails here, reading the file once without holding it in
    memory); a folder (a distributed checkpoint) must hold its ``.metadata``."""
    if path.is_dir():
        return None if (path / ".metadata").is_file() else "a checkpoint folder without its .metadata file"
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "an empty file"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "not a torch checkpoint (no data.pkl record)"
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"truncated or not a torch checkpoint: {error}"
    return f"record {damaged} fails its CRC check" if damaged else None


def usable_checkpoint(path: Union[str, Path]) -> Path:
    """``path``, or its kept previous version (one warning line) if ``path`` is unreadable."""
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    previous = previous_path(path)
    previous_problem = checkpoint_problem(previous)
    if previous_problem is None:
        if rank_zero_only.rank == 0:
            print(f"warning: checkpoint {path} is unreadable ({problem}); resuming from the previous checkpoint "
                  f"{previous} instead", file=sys.stderr, flush=True)
        return previous
    fallback = ("there is no previous checkpoint " f"{previous} to fall back to" if previous_problem == "no such file"
                else f"the previous checkpoint {previous} is unreadable too ({previous_problem})")
    raise UserInputError(f"checkpoint {path} is unreadable ({problem}) and {fallback}: pass another --ckpt_path, "
                         "or leave it out to start from scratch")


def version_of(checkpoint: Path, root: Path) -> Optional[int]:
    """N if ``checkpoint`` lies in ``root/version_N/checkpoints/``."""
    folder = checkpoint.resolve().parent
    if folder.name != "checkpoints" or folder.parent.parent != root.resolve():
        return None
    match = VERSION.match(folder.parent.name)
    return int(match.group(1)) if match else None


def claim_next_version(root: Path) -> int:
    """Create ``root/version_N`` for the next free N, atomically (``mkdir`` fails if it exists)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for m in map(VERSION.match, os.listdir(root)) if m]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


def global_step_of(checkpoint: Path) -> Optional[int]:
    """The checkpoint's ``global_step``, reading only its pickle (tensors stay memory-mapped)."""
    if checkpoint.is_dir():
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError:  # objects beyond tensors and plain types: the step stays unknown
        return None
    return state.get("global_step")


def prepare_run(trainer: pl.Trainer, ckpt_path: Optional[str], checked: Optional[str] = None) -> Optional[str]:
    """Resolve ``ckpt_path`` (``last`` or a file) to a readable checkpoint and point the first logger
    at the right version folder; returns the path to pass to ``trainer.fit``. ``checked``: a path
    that ``usable_checkpoint`` already accepted (not read again)."""
    logger = trainer.loggers[0] if trainer.loggers else None
    root = experiment_root(logger) if logger is not None else None
    resolved = ckpt_path
    if ckpt_path == "last" and root is not None:
        candidates = last_checkpoints(root)
        resolved = str(candidates[-1]) if candidates else None
        if resolved is None:
            rank_zero_info(f"--ckpt_path last: no {LAST} under {root}/version_*/checkpoints yet; starting from scratch")
    local_file = resolved not in (None, "last", "best", "hpc") and "://" not in str(resolved) \
        and not str(resolved).startswith("registry:")
    if local_file and resolved != checked:
        resolved = str(usable_checkpoint(resolved))
    if root is None or logger._version is not None:  # the user chose the version
        return resolved
    version = version_of(Path(resolved), root) if local_file else None
    if version is not None:
        logger._version = version
        step = global_step_of(Path(resolved))
        if step is not None and hasattr(logger, "_kwargs"):  # TensorBoard: hide the old run's events >= step
            logger._kwargs.setdefault("purge_step", step)
    elif rank_zero_only.rank == 0:
        logger._version = claim_next_version(root)
    return resolved

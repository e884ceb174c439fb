"""Crash-safe file writes shared by every writer in the framework (checkpoints, cached tokenizers,
generated demo files).

``atomic_write`` writes into a temporary file in the target's own folder (named after the target and
the writing process, so ranks or parallel runs sharing a cache folder never write the same temporary
file), fsyncs it, renames it over the target with ``os.replace`` and fsyncs the folder. A process
killed at any moment leaves either the previous complete file or the new complete one under the
final name, never a torn file; a torn temporary file may stay aside.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Union

Writer = Callable[[BinaryIO], object]


def temporary_path(path: Union[str, Path]) -> Path:
    """The temporary file ``atomic_write`` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Union[str, Path], data_or_writer: Union[bytes, bytearray, memoryview, str, Writer],
                 previous: Optional[Union[str, Path]] = None) -> Path:
    """Write ``data_or_writer`` to ``path`` atomically and durably; returns ``path``.

    Args:
        path: The final file; its folder is created if missing.
        data_or_writer: Bytes or text (UTF-8) to write, or a callable that writes into the open binary
            file handle it is given (e.g. ``lambda f: torch.save(obj, f)``, which streams without an
            in-memory copy of the serialised object).
        previous: If given and ``path`` already exists, the old file becomes ``previous`` (replacing
            it) once the new one is complete, so the last good version stays beside the new one. The
            old file keeps its name until the new one takes it (a hard link; a rename where the file
            system has none).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            if callable(data_or_writer):
                data_or_writer(handle)
            else:
                handle.write(data_or_writer.encode("utf-8") if isinstance(data_or_writer, str) else data_or_writer)
            handle.flush()
            os.fsync(handle.fileno())
        if previous is not None and path.exists():
            keep_as(path, Path(previous))
        os.replace(temporary, path)
        fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def keep_as(path: Path, previous: Path) -> None:
    """Atomically make ``previous`` the current content of ``path`` (which stays in place if it can)."""
    staged = temporary_path(previous)
    staged.unlink(missing_ok=True)
    try:
        os.link(path, staged)
    except OSError:  # no hard links here (some network/FUSE file systems): move it instead
        os.replace(path, previous)
        return
    os.replace(staged, previous)


def fsync_directory(directory: Union[str, Path]) -> None:
    """Make a rename in ``directory`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

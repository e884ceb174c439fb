"""``TextDataModule(source=...)``, kept for one release as a Python-only factory (YAML must name the
new classes: ``lit_moe.data.BuiltinText``, ``LocalTextFiles`` or ``HubTextStream``)."""

from __future__ import annotations

import warnings

from lit_core.errors import UserInputError
from lit_moe.data.base import PackedTextDataModule
from lit_moe.data.builtin import BuiltinText
from lit_moe.data.files import LocalTextFiles
from lit_moe.data.hub import HubTextStream

SOURCES = {"builtin": BuiltinText, "files": LocalTextFiles, "hub": HubTextStream}


def TextDataModule(source: str = "builtin", **kwargs) -> PackedTextDataModule:  # noqa: N802 (was a class)
    """Deprecated: build ``BuiltinText`` / ``LocalTextFiles`` / ``HubTextStream`` from ``source``."""
    if source not in SOURCES:
        raise UserInputError(f"unknown data source '{source}'; choose from {sorted(SOURCES)}")
    target = SOURCES[source]
    warnings.warn(f"lit_moe.TextDataModule(source='{source}') is deprecated and will be removed: use "
                  f"lit_moe.data.{target.__name__}", DeprecationWarning, stacklevel=2)
    return target(**kwargs)

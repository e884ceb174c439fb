"""Config composition for ``cli.py``: experiment files name the blocks they build on.

A YAML given with ``--config`` may start with ``defaults: [block.yaml, ...]`` (paths relative to the
file, as in lightning-hydra-template). Blocks merge left to right, the file itself last, with two rules
beyond jsonargparse's own: mappings merge key by key, and in ``trainer.callbacks`` /
``trainer.plugins`` an entry whose ``class_path`` is already present updates that entry's
``init_args`` instead of adding a second instance (so an experiment can say "checkpoint every 1000
steps" about the fault-tolerance block's callback). Other lists are replaced. The merged result
goes to LightningCLI as one config; ``--print_config`` and the run's saved ``config.yaml`` show it
resolved (without ``defaults``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lit_core.errors import UserInputError

KEYED_LISTS = {("trainer", "callbacks"), ("trainer", "plugins")}


def _merge(base: Any, overlay: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base[key], value, path + (key,)) if key in base else copy.deepcopy(value)
        return merged
    if path in KEYED_LISTS and isinstance(base, list) and isinstance(overlay, list):
        merged = [copy.deepcopy(entry) for entry in base]
        for entry in overlay:
            index = next((i for i, old in enumerate(merged) if isinstance(old, dict) and isinstance(entry, dict)
                          and old.get("class_path") == entry.get("class_path")), None)
            if index is None:
                merged.append(copy.deepcopy(entry))
            else:
                merged[index] = _merge(merged[index], entry, path + ("entry",))
        return merged
    return copy.deepcopy(overlay)


def load_composed(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The config at ``path`` with its ``defaults`` blocks merged in (recursively)."""
    path = Path(path).expanduser().resolve()
    if path in _seen:
        raise UserInputError(f"config {path} includes itself through 'defaults': {' -> '.join(map(str, _seen))}")
    if not path.is_file():
        raise UserInputError(f"config file not found: {path}")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise UserInputError(f"config {path} must be a YAML mapping")
    defaults = content.pop("defaults", None) or []
    if isinstance(defaults, str):
        defaults = [defaults]
    merged: dict = {}
    for block in defaults:
        merged = _merge(merged, load_composed(path.parent / block, _seen + (path,)))
    return _merge(merged, content)


def _uses_defaults(path: str) -> bool:
    try:
        content = yaml.safe_load(Path(path).expanduser().read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(content, dict) and "defaults" in content


def _config_path(args: list[str], i: int) -> tuple[str, int] | None:
    """(path, number of argv items) of a ``--config`` at position i, else None."""
    if args[i] == "--config" and i + 1 < len(args):
        return args[i + 1], 2
    if args[i].startswith("--config="):
        return args[i].split("=", 1)[1], 1
    return None


def compose_config_args(args: list[str]) -> list[str]:
    """Replace each run of adjacent ``--config`` files that uses ``defaults`` by one merged config (a
    YAML string). Everything else keeps its position, so command-line precedence (left to right) is
    unchanged; plain configs pass through untouched."""
    out: list[str] = []
    i = 0
    while i < len(args):
        group: list[str] = []
        while i < len(args) and (found := _config_path(args, i)) is not None:
            group.append(found[0])
            i += found[1]
        if not group:
            out.append(args[i])
            i += 1
            continue
        if any(_uses_defaults(path) for path in group):
            merged: dict = {}
            for path in group:
                merged = _merge(merged, load_composed(path))
            out += ["--config", yaml.safe_dump(merged, sort_keys=False)]
        else:
            for path in group:
                out += ["--config", path]
    return out

"""A study file: base configs, a grid of overrides, seeds and steps, expanded into runs.

A study YAML (see ``configs/studies/router_ablation.yaml`` and ``docs/studies.md``)::

    name: router_ablation
    base: [configs/moe/tiny.yaml]            # --config files, left to right (repo-relative paths)
    seeds: [1, 2, 3]                         # --seed_everything of each run
    steps: 1500                              # --trainer.max_steps
    target_loss: 1.6                         # the report counts tokens until val/loss <= this
    overrides: {data.init_args.builtin_domains: [docs, code]}   # every run (dotted CLI keys)
    grid:                                    # blocks; the study is their union
      - name: "{config}_b{default_beta}"     # optional name template (short key names, see below)
        overrides: {model.init_args.config.num_experts: 8}      # this block's fixed settings
        axes:                                # cartesian product of the axes ...
          - {config: [configs/moe/router/topk.yaml]}
          - {model.init_args.config.default_beta: [0.9, 0.99]}
          - {model.init_args.config.num_experts: [8, 32], model.init_args.config.top_k: [2, 4]}
                                             # ... keys inside one axis vary together (zipped)

Every value of an axis is one setting, so a list-valued setting is written as a one-element list of
lists (``{data.init_args.builtin_domains: [[docs, code]]}``). The key ``config`` adds overlay files
(a path or a list of paths) after ``base``. A cell's name is its block's template filled with the
*short names* of its keys (the last dotted component; ``config`` gives the overlay's file stem), or,
without a template, ``short=value`` of its axis keys joined by ``_``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import yaml

from lit_moe.errors import UserInputError

CONFIG_KEY = "config"
# Set by the runner for every run; a study cannot override them.
RESERVED_KEYS = ("seed_everything", "trainer.max_steps", "trainer.default_root_dir",
                 "trainer.logger.init_args.save_dir", "trainer.logger.init_args.name",
                 "trainer.logger.init_args.version", "ckpt_path")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Cell:
    """One point of the grid: overlay configs and dotted overrides on top of the study's base.

    Args:
        name: Directory-safe, unique name (``<root>/<name>/seed<S>``).
        configs: Overlay config files added after the study's base configs.
        overrides: Dotted CLI keys and their values, the study's common ones first.
    """

    name: str
    configs: tuple[str, ...]
    overrides: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly description, stored next to each run to detect an edited study."""
        return {"name": self.name, "configs": list(self.configs), "overrides": self.overrides}


@dataclass(frozen=True)
class Run:
    """One training run: a cell at one seed, in its own directory ``<root>/<cell>/seed<seed>``."""

    cell: Cell
    seed: int

    @property
    def key(self) -> str:
        return f"{self.cell.name}/seed{self.seed}"


@dataclass(frozen=True)
class Study:
    """A parsed study file.

    Args:
        name: The study's name (default root ``runs/studies/<name>``).
        path: The study file.
        repo: Repository root: relative paths in the file and ``cli.py`` are resolved against it.
        base: Base ``--config`` files (absolute).
        seeds: Seeds; each cell runs once per seed.
        steps: ``trainer.max_steps`` of every run.
        target_loss: Validation loss whose first crossing the report converts to tokens.
        root: Output root; every run logs and checkpoints under ``<root>/<cell>/seed<seed>``.
        cells: The expanded grid, in file order.
        baselines: cell -> the cell it is compared with, seed by seed, in the report (``baselines:`` in the file).
    """

    name: str
    path: Path
    repo: Path
    base: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    target_loss: Optional[float]
    root: Path
    cells: tuple[Cell, ...] = field(default_factory=tuple)
    baselines: dict[str, str] = field(default_factory=dict)

    def runs(self) -> list[Run]:
        """Every (cell, seed) pair: cells in file order, seeds inner."""
        return [Run(cell, seed) for cell in self.cells for seed in self.seeds]

    def run_dir(self, run: Run) -> Path:
        return self.root / run.cell.name / f"seed{run.seed}"


def repo_root() -> Path:
    """The checkout holding ``cli.py`` (this package lives in ``<repo>/lit_moe/study``)."""
    return Path(__file__).resolve().parents[2]


def load_study(path: str | Path, root: Optional[str | Path] = None, repo: Optional[Path] = None) -> Study:
    """Parse and validate a study file; every problem is one ``UserInputError`` before any run starts.

    Args:
        path: The study YAML.
        root: Output root overriding the file's ``root`` (relative: to the current directory).
        repo: Repository root (default: the checkout of this package).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"study file {path} does not exist; pass a YAML such as configs/studies/smoke.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserInputError(f"study file {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"study file {path} must be a mapping with keys name, base, seeds, steps, grid")
    known = {"name", "base", "seeds", "steps", "target_loss", "root", "overrides", "grid", "baselines"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserInputError(f"study file {path}: unknown keys {unknown}; allowed: {sorted(known)}")
    repo = (repo or repo_root()).resolve()
    name = _require(raw, "name", str, path)
    base = raw.get("base")
    base = [base] if isinstance(base, str) else base
    if not base or not all(isinstance(b, str) for b in base):
        raise UserInputError(f"study file {path}: 'base' must be a config path or a list of them")
    seeds = raw.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise UserInputError(f"study file {path}: 'seeds' must be a non-empty list of integers, e.g. [1, 2, 3]")
    if len(set(seeds)) != len(seeds):
        raise UserInputError(f"study file {path}: 'seeds' has duplicates: {seeds}")
    steps = _require(raw, "steps", int, path)
    if steps <= 0:
        raise UserInputError(f"study file {path}: 'steps' must be positive, got {steps}")
    target = raw.get("target_loss")
    if target is not None and not isinstance(target, (int, float)):
        raise UserInputError(f"study file {path}: 'target_loss' must be a number, got {target!r}")
    common = _overrides(raw.get("overrides") or {}, f"{path}: overrides")
    common_configs = _configs(common.pop(CONFIG_KEY, []), repo, f"{path}: overrides")
    if root is None:
        root = raw.get("root") or f"runs/studies/{name}"
        root = Path(root) if Path(root).is_absolute() else repo / root
    grid = raw.get("grid")
    if not isinstance(grid, list) or not grid:
        raise UserInputError(f"study file {path}: 'grid' must be a non-empty list of blocks (each with 'axes')")
    cells: list[Cell] = []
    for index, block in enumerate(grid):
        cells += _expand_block(block, common, common_configs, repo, f"{path}: grid[{index}]")
    seen: dict[str, Cell] = {}
    for cell in cells:
        if cell.name in seen:
            raise UserInputError(f"study file {path}: two cells are named {cell.name!r} ({seen[cell.name].overrides} "
                                 f"and {cell.overrides}); give the block a 'name' template that tells them apart")
        seen[cell.name] = cell
    resolved_base = tuple(_resolve(b, repo, f"{path}: base") for b in base)
    return Study(name=name, path=path.resolve(), repo=repo, base=resolved_base,
                 seeds=tuple(seeds), steps=steps, target_loss=None if target is None else float(target),
                 root=Path(root).resolve(), cells=tuple(cells), baselines=_baselines(raw.get("baselines"), seen, path))


def with_overrides(study: Study, steps: Optional[int] = None, seeds: Optional[Sequence[int]] = None,
                   target_loss: Optional[float] = None) -> Study:
    """The study with the command line's ``--steps`` / ``--seeds`` / ``--target-loss`` in place of the file's
    (a shorter trial of the same grid, say; give it its own ``--root``: steps are part of a cell's identity)."""
    if steps is not None and steps <= 0:
        raise UserInputError(f"--steps must be positive, got {steps}")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise UserInputError(f"--seeds must be distinct integers, got {list(seeds)}")
    return replace(study, steps=study.steps if steps is None else steps,
                   seeds=study.seeds if seeds is None else tuple(seeds),
                   target_loss=study.target_loss if target_loss is None else float(target_loss))


def _baselines(value: Any, cells: dict[str, Cell], path: Path) -> dict[str, str]:
    """The file's ``{baseline: [cells compared with it]}`` (or one cell name) as ``{cell: baseline}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserInputError(f"study file {path}: 'baselines' maps a baseline cell to the cells compared with it, "
                             f"e.g. {{topk_e8k2: [default_b0.9_forward_e8k2]}}")
    pairs: dict[str, str] = {}
    for baseline, compared in value.items():
        for cell in [compared] if isinstance(compared, str) else (compared or []):
            for name in (baseline, cell):
                if name not in cells:
                    raise UserInputError(f"study file {path}: baselines: no cell named {name!r}; "
                                         f"cells: {sorted(cells)}")
            pairs[cell] = baseline
    return pairs


def _require(raw: dict, key: str, kind: type, path: Path) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserInputError(f"study file {path}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def _resolve(config: str, repo: Path, where: str) -> str:
    resolved = Path(config) if Path(config).is_absolute() else repo / config
    if not resolved.is_file():
        raise UserInputError(f"{where}: config file {config} not found (relative paths start at {repo})")
    return str(resolved)


def _configs(value: Any, repo: Path, where: str) -> list[str]:
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserInputError(f"{where}: '{CONFIG_KEY}' must be a config path or a list of paths, got {value!r}")
    return [_resolve(v, repo, where) for v in value]


def _overrides(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserInputError(f"{where}: must map dotted keys (model.init_args.config.top_k) to values")
    for key in value:
        if key in RESERVED_KEYS:
            raise UserInputError(f"{where}: '{key}' is set by the study runner (use the study's 'steps', 'seeds', "
                                 f"'root' instead)")
        if key.startswith("--"):
            raise UserInputError(f"{where}: write keys without dashes: {key[2:]!r}")
    return dict(value)


def short_name(key: str) -> str:
    """``model.init_args.config.top_k`` -> ``top_k``: the field a name template refers to."""
    return key.rsplit(".", 1)[-1]


def format_value(value: Any) -> str:
    """How a setting appears in a cell name: overlay paths by file stem, lists joined with ``+``."""
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        return Path(value).stem
    return json.dumps(value) if isinstance(value, (dict, bool)) or value is None else str(value)


def _expand_block(block: Any, common: dict[str, Any], common_configs: list[str], repo: Path,
                  where: str) -> list[Cell]:
    if not isinstance(block, dict) or not set(block) <= {"name", "axes", "overrides"}:
        raise UserInputError(f"{where}: a block is a mapping with 'axes' (a list of {{key: [values]}}) and optional "
                             f"'name' and 'overrides'")
    template = block.get("name")
    if template is not None and not isinstance(template, str):
        raise UserInputError(f"{where}: 'name' must be a template string such as \"{{router}}_e{{num_experts}}\"")
    fixed = _overrides(block.get("overrides") or {}, f"{where}.overrides")
    axes = block.get("axes") or []
    if not isinstance(axes, list) or not all(isinstance(a, dict) and a for a in axes):
        raise UserInputError(f"{where}: 'axes' must be a list of non-empty mappings {{key: [values], ...}}")
    expanded_axes = []
    for axis_index, axis in enumerate(axes):
        axis = _overrides(axis, f"{where}.axes[{axis_index}]")
        lengths = {key: len(values) if isinstance(values, list) else -1 for key, values in axis.items()}
        if any(n <= 0 for n in lengths.values()) or len(set(lengths.values())) != 1:
            raise UserInputError(f"{where}.axes[{axis_index}]: every key needs a non-empty list of values, all of the "
                                 f"same length (keys in one axis vary together); got lengths {lengths}. A list-valued "
                                 f"setting is one value: write [[docs, code]]")
        n = next(iter(lengths.values()))
        expanded_axes.append([{key: values[i] for key, values in axis.items()} for i in range(n)])
    cells = []
    for combination in itertools.product(*expanded_axes) if expanded_axes else [()]:
        varied: dict[str, Any] = {}
        for point in combination:
            duplicate = set(point) & set(varied)
            if duplicate:
                raise UserInputError(f"{where}: key(s) {sorted(duplicate)} appear in more than one axis")
            varied.update(point)
        settings = {**fixed, **varied}
        configs = list(common_configs)
        if CONFIG_KEY in settings:
            configs += _configs(settings[CONFIG_KEY], repo, where)
        overrides = {k: v for k, v in {**common, **settings}.items() if k != CONFIG_KEY}
        name = _cell_name(template, settings, varied, where)
        cells.append(Cell(name=name, configs=tuple(configs), overrides=overrides))
    return cells


def _cell_name(template: Optional[str], settings: dict[str, Any], varied: dict[str, Any], where: str) -> str:
    fields: dict[str, str] = {}
    for key, value in settings.items():
        short = short_name(key)
        if short in fields and template is not None and f"{{{short}}}" in template:
            raise UserInputError(f"{where}: keys ending in '{short}' collide in the name template")
        fields[short] = format_value(value)
    if template is None:
        if not varied:
            raise UserInputError(f"{where}: a block without axes needs a 'name'")
        name = "_".join(f"{short_name(k)}={format_value(v)}" for k, v in varied.items())
    else:
        try:
            name = template.format(**fields)
        except (KeyError, IndexError, ValueError) as error:
            raise UserInputError(f"{where}: name template {template!r} refers to {error}, which this block does not "
                                 f"set; available: {sorted(fields)}") from None
    name = _NAME_CHARS.sub("-", name).strip("-.")
    if not name:
        raise UserInputError(f"{where}: name template {template!r} gives an empty name")
    return name

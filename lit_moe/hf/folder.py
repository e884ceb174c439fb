"""Reading a local Hugging Face folder: config.json, the safetensors shards and their headers.

Everything here reads metadata only (JSON and safetensors headers), so a bad folder is refused with
one ``UserInputError`` line before any weight is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from lit_moe.errors import UserInputError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
DEFAULT_STATE_NAME = "default_moe_state.safetensors"  # our Default-MoE buffers, beside the weights


@dataclass
class CheckpointFolder:
    path: Path
    raw_config: dict
    shards: list[Path]  # in index order
    tensors: dict[str, tuple[Path, tuple[int, ...]]]  # hf key -> (shard, shape)

    @property
    def model_type(self) -> str:
        return self.raw_config.get("model_type", "")

    def hf_config(self) -> Any:
        """The transformers config object (its defaults and legacy-field handling)."""
        from transformers import AutoConfig  # noqa: PLC0415 (optional, heavy import)

        try:
            return AutoConfig.for_model(**self.raw_config)
        except Exception as error:  # noqa: BLE001 (any parse failure is the user's file)
            raise UserInputError(f"{self.path / 'config.json'} could not be parsed by transformers: {error}") from None


def read_folder(folder: str | Path) -> CheckpointFolder:
    path = Path(folder)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserInputError(f"{path} is not a Hugging Face model folder: {config_file} does not exist")
    try:
        raw_config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise UserInputError(f"{config_file} is not valid JSON: {error}") from None
    index_file = path / INDEX_NAME
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text()).get("weight_map", {})
        shards = [path / name for name in dict.fromkeys(weight_map.values())]
    elif (path / SINGLE_NAME).is_file():
        weight_map, shards = None, [path / SINGLE_NAME]
    else:
        raise UserInputError(f"{path} has no {INDEX_NAME} or {SINGLE_NAME} (only safetensors weights are supported)")
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise UserInputError(f"{path}: shard {missing[0]} listed in {INDEX_NAME} is missing"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    tensors: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for shard in shards:
        try:
            with safe_open(str(shard), framework="pt") as handle:
                for key in handle.keys():
                    tensors[key] = (shard, tuple(handle.get_slice(key).get_shape()))
        except Exception as error:  # noqa: BLE001 (corrupt header)
            raise UserInputError(f"{shard} is not a readable safetensors file: {error}") from None
    if weight_map is not None:
        absent = [k for k, shard in weight_map.items() if k not in tensors or tensors[k][0].name != shard]
        if absent:
            raise UserInputError(f"{path}: tensor {absent[0]} is listed in {INDEX_NAME} under {weight_map[absent[0]]} "
                                 "but that shard does not contain it")
    return CheckpointFolder(path, raw_config, shards, tensors)

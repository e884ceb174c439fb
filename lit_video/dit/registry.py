"""Which DiT family a folder holds, and building its components (tiny or from the folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from lit_video.dit.cogvideox import build_tiny_cogvideox, load_cogvideox
from lit_video.dit.latte import build_tiny_latte, load_latte
from lit_video.dit.wan import build_tiny_wan, load_wan
from lit_video.errors import VideoInputError

TRANSFORMER_FAMILIES = {"WanTransformer3DModel": "wan", "CogVideoXTransformer3DModel": "cogvideox",
                        "LatteTransformer3DModel": "latte"}


def folder_dit_family(path: Optional[str]) -> Optional[str]:
    """``wan`` / ``cogvideox`` / ``latte`` for a diffusers folder with ``transformer/``; ``None`` otherwise."""
    if not path:
        return None
    config_file = Path(path).expanduser() / "transformer" / "config.json"
    if not config_file.is_file():
        return None
    name = json.loads(config_file.read_text()).get("_class_name", "")
    if name not in TRANSFORMER_FAMILIES:
        raise VideoInputError(f"{config_file.parent} holds a {name or 'unknown model'}: supported DiTs are "
                              f"{sorted(TRANSFORMER_FAMILIES)}")
    return TRANSFORMER_FAMILIES[name]


def build_dit_components(spec, family: str):
    """The family's components from ``spec`` (a ``ComponentsSpec``)."""
    if family == "wan":

        if spec.pretrained_path:
            return load_wan(Path(spec.pretrained_path).expanduser(), spec.flow_shift)
        return build_tiny_wan(spec.tiny_dit, spec.flow_shift)
    if family == "cogvideox":

        if spec.pretrained_path:
            return load_cogvideox(Path(spec.pretrained_path).expanduser())
        return build_tiny_cogvideox(spec.tiny_dit)
    if family == "latte":

        if spec.pretrained_path:
            return load_latte(Path(spec.pretrained_path).expanduser())
        return build_tiny_latte(spec.tiny_dit)
    raise VideoInputError(f"unknown components.family {family!r}: use unet, wan, cogvideox or latte")

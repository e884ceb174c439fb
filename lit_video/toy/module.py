"""The recipe on the shipped toy model: ``MotionCustomizationModule`` with the base upcast to float32.

The shipped weights are stored in float16 (to stay under 5 MB in the repo) and diffusers/transformers
load them as float16; CPU training and sampling want float32, so these subclasses cast the frozen
base (and the LoRA injected into it) once after loading. They take exactly their parents' arguments.
"""

from __future__ import annotations

from lit_video.module import MotionCustomizationModule
from lit_video.predict import LoRASampler


class ToyMotionCustomizationModule(MotionCustomizationModule):
    """``MotionCustomizationModule`` whose components (and LoRA) are float32 whatever the stored dtype."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.components.float()


class ToyLoRASampler(LoRASampler):
    """``LoRASampler`` whose components are float32 whatever the stored dtype."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.components.float()

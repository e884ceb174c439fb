"""lit_video: timestep-constrained one-shot motion customization of text-to-video diffusion models.

LoRA trained only in the motion timesteps t ∈ [t*, T−1] (and applied only there at inference),
the MotionDirector baseline, the motion-encoding probe that measures t*, and video dashboards.
"""

from lit_video.components import ComponentsSpec, TinyComponentsConfig, VideoDiffusionComponents, build_components
from lit_video.data import ReferenceVideoDataModule
from lit_video.errors import VideoInputError
from lit_video.module import MotionCustomizationModule

__all__ = [
    "ComponentsSpec",
    "MotionCustomizationModule",
    "ReferenceVideoDataModule",
    "TinyComponentsConfig",
    "VideoDiffusionComponents",
    "VideoInputError",
    "build_components",
]

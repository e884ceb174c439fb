"""The motion-encoding probe in the toy world: appearance is the colour agreement of the frames with
the new prompt (``lit_video.toy.colour``, 0..100) instead of a CLIP score; everything else is
``MotionEncodingProbe``."""

from __future__ import annotations

from lit_video.probe import MotionEncodingProbe
from lit_video.toy.colour import ColourScorer


class ToyProbe(MotionEncodingProbe):
    """``MotionEncodingProbe`` with the colour score as appearance (its ``clip_model_path`` is unused).

    Accepts exactly ``MotionEncodingProbe``'s arguments; the plot's appearance axis then reads "% of
    the shape in the prompt's colour, new prompt" (the scorer's ``score_label``). The components are cast to
    float32 (the shipped toy weights are stored in float16).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.components.float()

    @property
    def clip(self) -> ColourScorer:
        return ColourScorer()

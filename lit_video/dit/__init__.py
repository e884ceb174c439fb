"""DiT video backbones (Wan 2.x flow matching, CogVideoX v-prediction, Latte) behind the components
interface the UNets use: ``components.py`` builds them, ``module.DiTMotionCustomizationModule`` trains
them with the timestep window in each model's own noise units. One file per model family.

Nothing is imported here: ``lit_video.components`` imports ``lit_video.dit.config`` at import time.
"""

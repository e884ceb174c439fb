"""The toy world: moving coloured shapes, a tiny text-to-video model pretrained on them, and the
probe / recipe shown on it offline (docs/video.md, "Toy world")."""

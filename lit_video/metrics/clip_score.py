"""CLIP text–frame score and temporal consistency, computed in our code from a local CLIP folder.

- text–frame score: mean over frames of max(100 · cos(E_img(frame), E_txt(prompt)), 0)
  (the torchmetrics CLIPScore definition, which itself downloads and breaks with transformers 5).
- temporal consistency: mean cosine of consecutive frames' image embeddings.

Images are preprocessed in torch (bicubic resize of the short side, centre crop, CLIP mean/std
from the folder's ``preprocessor_config.json``), so no torchvision and no image-processor class.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from lit_video.components import tiny_clip_tokenizer
from lit_video.errors import VideoInputError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPVideoScorer:
    """Scores videos with a ``CLIPModel`` + tokenizer saved in a local folder.

    Args:
        model_path: Folder with a ``CLIPModel`` (e.g. a saved ``openai/clip-vit-base-patch32``) and
            its tokenizer.
    """

    score_label = "CLIP score"  # what ``text_frame_score`` measures, for plot axes

    def __init__(self, model_path: str) -> None:
        from transformers import AutoTokenizer, CLIPModel  # noqa: PLC0415 (transformers, heavy)

        folder = Path(model_path).expanduser()
        if not (folder / "config.json").is_file():
            raise VideoInputError(f"CLIP folder {folder} has no config.json: save a CLIP model there "
                                  "(CLIPModel.save_pretrained + tokenizer.save_pretrained) on a machine with "
                                  "network access and point clip_model_path at it")
        self.model = CLIPModel.from_pretrained(folder).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        preprocessor = folder / "preprocessor_config.json"
        if preprocessor.is_file():
            config = json.loads(preprocessor.read_text())
            mean, std = config.get("image_mean", mean), config.get("image_std", std)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.image_size = int(self.model.config.vision_config.image_size)

    def preprocess(self, frames_FHW3: np.ndarray) -> torch.Tensor:
        """uint8 frames → normalised (F, 3, S, S) CLIP inputs."""
        images = torch.from_numpy(np.ascontiguousarray(frames_FHW3)).permute(0, 3, 1, 2).float() / 255
        scale = self.image_size / min(images.shape[-2:])
        size = (max(self.image_size, round(images.shape[-2] * scale)),
                max(self.image_size, round(images.shape[-1] * scale)))
        images = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        images = images[:, :, top:top + self.image_size, left:left + self.image_size]
        return (images - self.mean) / self.std

    @torch.no_grad()
    def image_embeddings(self, frames_FHW3: np.ndarray) -> torch.Tensor:
        pooled = self.model.vision_model(pixel_values=self.preprocess(frames_FHW3)).pooler_output
        return F.normalize(self.model.visual_projection(pooled), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        max_length = min(int(self.tokenizer.model_max_length), self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt")
        pooled = self.model.text_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output
        return F.normalize(self.model.text_projection(pooled), dim=-1)

    def text_frame_score(self, frames_FHW3: np.ndarray, prompt: str) -> float:
        """Mean over frames of max(100 · cos(frame, prompt), 0)."""
        cosine = self.image_embeddings(frames_FHW3) @ self.text_embeddings([prompt])[0]
        return float((100 * cosine).clamp_min(0).mean())

    def temporal_consistency(self, frames_FHW3: np.ndarray) -> float:
        """Mean cosine similarity of consecutive frames' image embeddings."""
        embeddings = self.image_embeddings(frames_FHW3)
        return float((embeddings[1:] * embeddings[:-1]).sum(-1).mean())


def build_tiny_clip(directory: Optional[str] = None, seed: int = 0) -> str:
    """Saves a tiny random CLIP model + character tokenizer to a folder (tests and the CPU demo only:
    its scores are plumbing checks, not measurements) and returns the folder."""
    from transformers import CLIPConfig, CLIPModel  # noqa: PLC0415 (transformers, heavy)


    folder = Path(directory) if directory else Path(tempfile.gettempdir()) / "lit_video" / f"tiny_clip_seed{seed}"
    if all((folder / name).is_file() for name in ("tokenizer_config.json", "config.json", "model.safetensors")):
        return str(folder)
    tokenizer = tiny_clip_tokenizer(32, str(folder / "vocab"))
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return str(folder)

"""``cli.py predict`` for quick looks at a trained or imported model: prompts from the config
(``PromptDataModule``), completions written to a file and to TensorBoard's Text tab."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from lit_moe.data.tokenizers import ByteTokenizer, load_tokenizer_file
from lit_moe.errors import UserInputError
from lit_moe.generation.sampling import generate
from lit_moe.hf import load_hf, model_from_checkpoint


class GenerationModule(pl.LightningModule):
    """Generates completions of the datamodule's prompts with a KV cache (greedy or top-p).

    Args:
        source: A Hugging Face model folder (``config.json`` + safetensors) or a Lightning checkpoint
            (``.ckpt`` file or FSDP2 checkpoint directory) of ``LanguageModelingModule``.
        tokenizer: ``byte`` (the framework's raw-byte tokenizer), a ``tokenizer.json`` or a folder with
            one; ``None`` uses the source folder's own tokenizer.
        max_new_tokens: Tokens generated per prompt (fewer if the end-of-text token comes first).
        temperature: 0 decodes greedily; otherwise the softmax temperature of top-p sampling.
        top_p: Nucleus size: sample among the most likely tokens whose mass reaches ``top_p``.
        seed: Seed of the sampling generator (one stream over all prompts, in order).
        output_file: Where to write one JSON line per prompt (``prompt``, ``completion``, token ids);
            ``None`` writes ``generations.jsonl`` in the logger's directory (or the trainer's root).
        router: Override the checkpoint's router for generation (e.g. ``topk`` on a Default-MoE model).
    """

    def __init__(self, source: str, tokenizer: str | None = None, max_new_tokens: int = 64,
                 temperature: float = 0.0, top_p: float = 0.9, seed: int = 0, output_file: str | None = None,
                 router: str | None = None) -> None:
        super().__init__()
        if not 0 < top_p <= 1:
            raise UserInputError(f"top_p={top_p} must lie in (0, 1]")
        self.source, self.max_new_tokens = source, max_new_tokens
        self.temperature, self.top_p, self.seed, self.output_file = temperature, top_p, seed, output_file
        self.tokenizer = self._load_tokenizer(tokenizer)
        self.model = self._load_model(router)
        self._results: list[dict] = []

    def _load_tokenizer(self, spec: str | None):
        if spec == "byte":
            return ByteTokenizer()
        if spec is None:
            if not Path(self.source).is_dir():
                raise UserInputError("model.init_args.tokenizer is needed with a Lightning checkpoint source "
                                     "(byte, or the tokenizer.json the model was trained with)")
            spec = self.source
        return load_tokenizer_file(spec)

    def _load_model(self, router: str | None):
        overrides = {"router": router} if router else {}
        path = Path(self.source)
        if (path / "config.json").is_file():
            return load_hf(path, **overrides)
        model = model_from_checkpoint(path)
        if router:
            for layer in model.moe_layers().values():
                layer.router_name = router
        return model

    def forward(self, tokens_BS: torch.Tensor):
        return self.model(tokens_BS)

    def on_predict_start(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)
        self._results = []

    def predict_step(self, prompt: str, batch_idx: int) -> dict:
        ids = self.tokenizer.encode_batch([prompt])[0]
        eos = getattr(self.tokenizer, "eos_id", None)
        new = generate(self.model, ids, self.max_new_tokens, self.temperature, self.top_p, eos, self._generator)
        text = self.tokenizer.decode([t for t in new if t != eos])
        result = {"prompt": prompt, "completion": text, "prompt_ids": ids, "completion_ids": new}
        self._results.append(result)
        return result

    def on_predict_end(self) -> None:
        logger = self.trainer.logger
        folder = Path(logger.log_dir) if logger is not None and logger.log_dir else Path(self.trainer.default_root_dir)
        path = Path(self.output_file) if self.output_file else folder / "generations.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            for result in self._results:
                handle.write(json.dumps(result) + "\n")
        print(f"wrote {len(self._results)} completions to {path}", flush=True)
        writer = getattr(logger, "experiment", None) if logger is not None else None
        if writer is not None and hasattr(writer, "add_text"):
            sampling = "greedy" if self.temperature <= 0 else f"top-p {self.top_p}, temperature {self.temperature}"
            for index, result in enumerate(self._results):
                writer.add_text(f"generation/prompt_{index}", f"**{_md(result['prompt'])}**{_md(result['completion'])}"
                                f"\n\n_{sampling}, {len(result['completion_ids'])} tokens_", global_step=0)
            writer.flush()


def _md(text: str) -> str:
    """Keep the text literal in TensorBoard's markdown rendering."""
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("\n", "  \n")

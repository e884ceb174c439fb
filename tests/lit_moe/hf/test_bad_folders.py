"""A bad folder is refused with one error line naming the problem, before any weight is read."""

from __future__ import annotations

import json

import pytest
import torch

from lit_moe.errors import UserInputError
from lit_moe.hf import load_hf
from tests.lit_moe.hf.helpers import save_random_hf

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("olmoe")
    save_random_hf("olmoe", path)
    return path


def _copy(folder, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _refuses(path, pattern, monkeypatch):
    from lit_moe.hf import load

    def no_weight_reads(*_args, **_kwargs):
        raise AssertionError("weights were read before the folder was validated")

    monkeypatch.setattr(load, "stream_weights", no_weight_reads)
    with pytest.raises(UserInputError, match=pattern) as info:
        load_hf(path)
    assert "\n" not in str(info.value)


def test_missing_shard(folder, tmp_path, monkeypatch):
    path = _copy(folder, tmp_path)
    victim = sorted(path.glob("model-*.safetensors"))[1]
    victim.unlink()
    _refuses(path, f"shard {victim.name} listed in model.safetensors.index.json is missing", monkeypatch)


def test_unsupported_model_type(folder, tmp_path, monkeypatch):
    path = _copy(folder, tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    _refuses(path, "unsupported model_type 'gpt2'; supported: llama, mixtral, olmoe", monkeypatch)


def test_tensor_of_wrong_shape(folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    path = _copy(folder, tmp_path)
    index = json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]
    key = "model.layers.1.mlp.experts.3.up_proj.weight"
    shard = path / index[key]
    tensors = load_file(shard)
    tensors[key] = torch.zeros(31, 64)
    save_file(tensors, shard, metadata={"format": "pt"})
    _refuses(path, rf"tensor {key} has shape \[31, 64\], expected \[32, 64\]", monkeypatch)


def test_missing_tensor_and_not_a_folder(folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    path = _copy(folder, tmp_path)
    index_file = path / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    key = "model.layers.0.self_attn.k_norm.weight"
    shard = path / index["weight_map"].pop(key)
    tensors = load_file(shard)
    del tensors[key]
    save_file(tensors, shard, metadata={"format": "pt"})
    index_file.write_text(json.dumps(index))
    _refuses(path, f"tensor {key} is missing", monkeypatch)
    _refuses(tmp_path / "nowhere", "is not a Hugging Face model folder", monkeypatch)

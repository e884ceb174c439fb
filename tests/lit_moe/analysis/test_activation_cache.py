"""Activation harvest: the cache round-trips the residual stream bit-exactly, resumes mid-harvest and
refuses to mix harvests."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lit_moe.analysis.activation_cache import ActivationCache, shard_path
from lit_moe.analysis.cache_data import ActivationCacheDataModule
from lit_moe.analysis.domains import DomainDataModule
from lit_moe.analysis.harvest import ActivationHarvestModule
from lit_moe.errors import UserInputError
from tests.lit_moe.analysis.helpers import random_model, save_checkpoint, tiny_config


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    moe = save_checkpoint(random_model(tiny_config(n_layers=3), seed=1), folder / "moe.ckpt")
    dense = save_checkpoint(random_model(tiny_config(n_layers=3, first_k_dense=3, d_dense=64), seed=2),
                            folder / "dense.ckpt")
    return {"moe": str(moe), "dense": str(dense)}


SITES = {"moe": ["resid_post.1", "resid_mid.2"], "dense": ["resid_post.1", "resid_pre.0"]}


def _harvest(pair, cache_dir, dtype="bfloat16", limit=None) -> ActivationHarvestModule:
    module = ActivationHarvestModule(pair, SITES, str(cache_dir), dtype)
    data = DomainDataModule(builtin=["docs", "code"], tokens_per_domain=24 * 32, seq_len=32, batch_size=5)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_predict_batches=limit if limit is not None else 1.0)
    trainer.predict(module, datamodule=data, return_predictions=False)
    return module


def _residual_stream(model, tokens_BS):
    """Reference: the blocks run by hand, no hooks."""
    out = {}
    x_BSD = model.embed(tokens_BS)
    for index, block in enumerate(model.blocks):
        out[f"resid_pre.{index}"] = x_BSD
        mid_BSD = x_BSD + block.attn(block.attn_norm(x_BSD))
        out[f"resid_mid.{index}"] = mid_BSD
        x_BSD, _ = block(x_BSD)
        out[f"resid_post.{index}"] = x_BSD
    return out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_cache_round_trips_the_residual_stream_bit_exactly(pair, tmp_path, dtype):
    module = _harvest(pair, tmp_path / "cache", dtype)
    cache = ActivationCache(tmp_path / "cache")
    assert cache.meta.num_sequences == 48 and cache.meta.num_shards == 10 and len(cache) == 48 * 32
    assert cache.meta.domains == ["docs", "code"] and cache.domains_N.tolist() == [0] * 24 + [1] * 24
    torch_dtype = getattr(torch, dtype)
    rows_T = torch.arange(len(cache))
    with torch.no_grad():
        for name, model in module.models.items():
            reference = _residual_stream(model, cache.tokens_NS)
            for site in SITES[name]:
                column = cache.site(f"{name}/{site}")
                stored = cache.raw_rows(rows_T, [slice(column.offset, column.offset + column.width)])
                expected = reference[site].reshape(len(cache), -1).to(torch_dtype)
                assert stored.dtype == torch_dtype
                assert torch.equal(stored.view(torch.int16), expected.view(torch.int16)), f"{name}/{site}"
    shuffled_T = torch.randperm(len(cache))[:100]  # random access across shards, fp32 view
    got = cache.activations(shuffled_T, ["moe/resid_post.1", "dense/resid_post.1"])
    with torch.no_grad():
        expected_moe = _residual_stream(module.models["moe"], cache.tokens_NS)["resid_post.1"]
    assert torch.equal(got[:, 0], expected_moe.reshape(len(cache), -1)[shuffled_T].to(torch_dtype).float())


def test_harvest_resumes_mid_way_and_matches_an_uninterrupted_one(pair, tmp_path):
    first = _harvest(pair, tmp_path / "resumed", limit=4)
    assert first.shards_written == 4
    with pytest.raises(UserInputError, match="incomplete"):
        ActivationCache(tmp_path / "resumed")
    shard_path(tmp_path / "resumed", 4).with_suffix(".tmp").write_bytes(b"half-written shard of a killed run")
    second = _harvest(pair, tmp_path / "resumed")
    assert second.shards_written == 6  # only the missing shards ran the models
    _harvest(pair, tmp_path / "straight")
    for shard in range(10):
        resumed = shard_path(tmp_path / "resumed", shard).read_bytes()
        assert resumed == shard_path(tmp_path / "straight", shard).read_bytes()
    assert (tmp_path / "resumed" / "tokens.npy").read_bytes() == (tmp_path / "straight" / "tokens.npy").read_bytes()


def test_a_cache_folder_refuses_a_different_harvest(pair, tmp_path):
    _harvest(pair, tmp_path / "cache", limit=1)
    with pytest.raises(UserInputError, match="different harvest"):
        _harvest({"moe": pair["dense"], "dense": pair["moe"]}, tmp_path / "cache")


def test_cache_datamodule_serves_paired_batches_split_by_sequence(pair, tmp_path):
    _harvest(pair, tmp_path / "cache")
    data = ActivationCacheDataModule(str(tmp_path / "cache"), ["dense/resid_post.1", "moe/resid_post.1"],
                                     batch_size=64, val_fraction=0.25)
    data.setup()
    assert data.train_rows.numel() + data.val_rows.numel() == 48 * 32
    assert set((data.val_rows // 32).tolist()).isdisjoint((data.train_rows // 32).tolist())
    a_BMD, rows_B = next(iter(data.train_dataloader()))
    assert a_BMD.shape == (64, 2, 32) and a_BMD.dtype == torch.float32
    torch.testing.assert_close(a_BMD, data.cache.activations(rows_B, data.sites), rtol=0, atol=0)
    with pytest.raises(UserInputError, match="not in the cache"):
        ActivationCacheDataModule(str(tmp_path / "cache"), ["dense/resid_post.9", "moe/resid_post.1"]).setup()

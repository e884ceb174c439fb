"""Pretraining the toy model: the loop runs both phases, the export loads as a diffusers folder, and the
shipped model is small and loads offline."""

import lightning.pytorch as pl
import pytest
import torch

from lit_video.components import ComponentsSpec, TinyComponentsConfig, build_components
from lit_video.toy.evaluate import TOY_MODEL_PATH
from lit_video.toy.pretrain import ExportToyModel, ToyClipsDataModule, ToyPretrainModule


def test_two_phases_train_and_the_export_loads_like_a_diffusers_checkpoint(tmp_path):
    tiny = TinyComponentsConfig(block_out_channels=(16, 32), text_width=16, max_prompt_tokens=8,
                                vae_block_out_channels=(8, 16), norm_num_groups=4)
    module = ToyPretrainModule(tiny, vae_steps=3, warmup_steps=1)
    vae_before = [p.detach().clone() for p in module.components.vae.parameters()]
    unet_before = [p.detach().clone() for p in module.components.unet.parameters()]
    trainer = pl.Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[ExportToyModel(str(tmp_path / "toy"), dtype="float32")])
    trainer.fit(module, datamodule=ToyClipsDataModule(num_clips=40, batch_size=2, num_frames=4, height=16, width=16))
    assert module.components.vae.config.scaling_factor != 1.0  # set at the phase switch
    assert any(not torch.equal(a, b) for a, b in zip(vae_before, module.components.vae.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(unet_before, module.components.unet.parameters()))
    loaded = build_components(ComponentsSpec(pretrained_path=str(tmp_path / "toy")))
    for ours, theirs in zip(module.components.unet.state_dict().values(), loaded.unet.state_dict().values()):
        torch.testing.assert_close(ours, theirs)
    text = loaded.encode_prompts(["a red square moving right"])
    torch.testing.assert_close(text, module.components.encode_prompts(["a red square moving right"]))
    assert loaded.vae.config.scaling_factor == module.components.vae.config.scaling_factor


def test_shipped_toy_model_is_small_and_loads_offline():
    size = sum(f.stat().st_size for f in TOY_MODEL_PATH.rglob("*") if f.is_file())
    assert size <= 5 * 2 ** 20, size
    components = build_components(ComponentsSpec(pretrained_path=str(TOY_MODEL_PATH)))
    assert components.unet_kind == "unet3d" and components.vae_scale_factor == 4
    ids = components.tokenizer(["a blue circle moving left"]).input_ids[0]
    assert components.tokenizer.unk_token_id not in ids


def test_min_snr_weight_and_learning_rate_schedule_follow_their_formulas():
    module = ToyPretrainModule(TinyComponentsConfig(block_out_channels=(16, 32), text_width=16, max_prompt_tokens=8,
                                                    vae_block_out_channels=(8, 16), norm_num_groups=4),
                               vae_steps=10, learning_rate=1e-3, warmup_steps=4, min_snr_gamma=5.0,
                               final_learning_rate_ratio=0.1)
    timesteps = torch.tensor([0, 100, 500, 999])
    alpha_bar = module.components.scheduler.alphas_cumprod.double()[timesteps]
    snr = alpha_bar / (1 - alpha_bar)
    expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr  # float64, written out here
    torch.testing.assert_close(module.loss_weight(timesteps).double(), expected, rtol=1e-5, atol=0)
    assert module.loss_weight(timesteps)[-1] == 1.0 and module.loss_weight(timesteps)[0] < 0.01
    module._trainer = type("T", (), {"max_steps": 114})()  # 10 VAE + 4 warm-up + 100 cosine steps
    rates = [module.diffusion_learning_rate(step) for step in (10, 13, 14, 64, 114)]
    assert rates[0] == pytest.approx(1e-3 / 4) and rates[1] == pytest.approx(1e-3)  # linear warm-up
    assert rates[2] == pytest.approx(1e-3) and rates[3] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # cosine mid
    assert rates[4] == pytest.approx(1e-4)  # ends at final_learning_rate_ratio × learning_rate
    module.hparams.min_snr_gamma = None
    assert torch.equal(module.loss_weight(timesteps), torch.ones(4))


def test_exported_weights_are_the_ema_of_the_diffusion_phase(tmp_path):
    """toy_pretrain.yaml's EMAWeightAveraging: the export holds decay-weighted averages of the weights after
    each diffusion step (first update = copy), recomputed here in float64 from recorded weights."""
    from lightning.pytorch.callbacks import Callback, EMAWeightAveraging

    tiny = TinyComponentsConfig(block_out_channels=(16, 32), text_width=16, max_prompt_tokens=8,
                                vae_block_out_channels=(8, 16), norm_num_groups=4)
    module = ToyPretrainModule(tiny, vae_steps=2, warmup_steps=1, learning_rate=1e-2)
    recorded = []

    class Record(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            if trainer.global_step > 2:  # after a diffusion step
                unet = pl_module.components.unet
                recorded.append({k: v.detach().double().clone() for k, v in unet.state_dict().items()})

    decay = 0.5
    trainer = pl.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[Record(), EMAWeightAveraging(decay=decay, update_starting_at_step=2),
                                    ExportToyModel(str(tmp_path / "toy"), dtype="float32")])
    trainer.fit(module, datamodule=ToyClipsDataModule(num_clips=40, batch_size=2, num_frames=4, height=16, width=16))
    assert len(recorded) == 4
    expected = dict(recorded[0])
    for weights in recorded[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * weights[k] for k in expected}
    exported = build_components(ComponentsSpec(pretrained_path=str(tmp_path / "toy"))).unet.state_dict()
    moved = 0
    for name, value in exported.items():
        torch.testing.assert_close(value.double(), expected[name], rtol=1e-5, atol=1e-6)
        moved += not torch.allclose(expected[name], recorded[-1][name])
    assert moved > 0  # the average differs from the last step's weights


def test_continue_overlay_starts_from_the_shipped_weights(tmp_path):
    """toy_pretrain_continue.yaml loads the shipped export (VAE and latent scale kept) before training."""
    from cli import main
    from tests.lit_video.helpers import REPO_ROOT

    configs = REPO_ROOT / "configs/video"
    cli = main(["fit", "--config", str(configs / "toy_pretrain.yaml"), "--config",
                str(configs / "toy_pretrain_continue.yaml"), "--model.init_args.init_from", str(TOY_MODEL_PATH),
                "--trainer.max_steps", "1", "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar",
                "false", "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir",
                str(tmp_path)])
    shipped = build_components(ComponentsSpec(pretrained_path=str(TOY_MODEL_PATH)))
    trained = cli.model.components
    assert trained.vae.config.scaling_factor == shipped.vae.config.scaling_factor != 1.0
    for ours, theirs in zip(trained.vae.state_dict().values(), shipped.vae.state_dict().values()):
        torch.testing.assert_close(ours, theirs.float())  # frozen: no VAE phase
    drift = max(float((a - b.float()).abs().max())
                for a, b in zip(trained.unet.state_dict().values(), shipped.unet.state_dict().values()))
    assert 0 < drift < 0.05  # one small step away from the shipped UNet, not a fresh random one
    [export] = list(tmp_path.rglob("toy_t2v"))
    assert (export / "unet" / "config.json").is_file()


def test_init_from_loads_an_animatediff_layout_export(tmp_path):
    """init_from reads the export with the components loader, so the motion-module UNet loads too."""
    tiny = TinyComponentsConfig(unet_kind="motion", block_out_channels=(16, 32), text_width=16, max_prompt_tokens=8,
                                vae_block_out_channels=(8, 16), norm_num_groups=4, seed=3)
    source = ToyPretrainModule(tiny)
    source.components.vae.register_to_config(scaling_factor=0.5)
    source.save_pretrained(tmp_path / "toy", dtype=torch.float32)
    continued = ToyPretrainModule(TinyComponentsConfig(**{**tiny.__dict__, "seed": 4}), init_from=str(tmp_path / "toy"))
    assert continued.components.vae.config.scaling_factor == 0.5
    for name in ("unet", "vae", "text_encoder"):
        ours = getattr(continued.components, name).state_dict()
        for key, value in getattr(source.components, name).state_dict().items():
            torch.testing.assert_close(ours[key], value)

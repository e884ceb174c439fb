"""The shipped MoE configs: they parse (with every router overlay), compose the shared blocks, and the
1B model is ~1B."""

from __future__ import annotations

import pytest
import torch
import yaml

from lit_core.cli import main
from lit_core.config_compose import load_composed
from lit_moe.model import MoETransformer, MoETransformerConfig
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs/moe"


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        items = {}
        for key, value in tree.items():
            items.update(_flatten(value, f"{prefix}{key}."))
        return items
    return {prefix.rstrip("."): tree}


ROUTER_OVERLAYS = sorted(p.name for p in (CONFIGS / "router").glob("*.yaml"))


@pytest.mark.parametrize("name", ["tiny.yaml", "fineweb_edu_1b.yaml"])
def test_config_parses(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / name), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: lit_moe.LanguageModelingModule" in capsys.readouterr().out


@pytest.mark.parametrize("overlay", ROUTER_OVERLAYS)
def test_router_overlay_changes_only_the_router(overlay, capsys):
    printed = {}
    for extra in ([], ["--config", str(CONFIGS / "router" / overlay)]):
        with pytest.raises(SystemExit):
            main(["fit", "--config", str(CONFIGS / "tiny.yaml"), *extra, "--print_config"])
        printed[bool(extra)] = _flatten(yaml.safe_load(capsys.readouterr().out))
    differing = {k for k in printed[False].keys() | printed[True].keys()
                 if printed[False].get(k) != printed[True].get(k)}
    assert differing <= {"model.init_args.config.router"}
    assert printed[True]["model.init_args.config.router"] == overlay.removesuffix(".yaml")


@pytest.mark.parametrize("name", ["tiny.yaml", "fineweb_edu_1b.yaml"])
def test_every_experiment_composes_the_fault_tolerance_block(name):
    composed = load_composed(CONFIGS / name)
    callbacks = [c["class_path"] for c in composed["trainer"]["callbacks"]]
    plugins = [p["class_path"] for p in composed["trainer"]["plugins"]]
    assert plugins == ["lit_core.checkpointing.AtomicCheckpointIO"]
    for required in ("lit_core.checkpointing.ExperimentCheckpoint", "lit_core.checkpointing.PreemptionCheckpoint",
                     "lit_moe.callbacks.RoutingDashboard", "lit_moe.callbacks.RouterFidelity"):
        assert callbacks.count(required) == 1, (name, callbacks)


def test_experiment_entry_updates_the_block_entry_of_the_same_class():
    composed = load_composed(CONFIGS / "fineweb_edu_1b.yaml")
    checkpoint = next(c for c in composed["trainer"]["callbacks"]
                      if c["class_path"] == "lit_core.checkpointing.ExperimentCheckpoint")
    assert checkpoint["init_args"] == {"save_last": True, "save_top_k": -1, "every_n_train_steps": 1000}


def test_1b_config_instantiates_on_meta_with_the_documented_parameter_count():
    raw = load_composed(CONFIGS / "fineweb_edu_1b.yaml")
    config = MoETransformerConfig(**raw["model"]["init_args"]["config"])
    documented = (CONFIGS / "fineweb_edu_1b.yaml").read_text()
    assert "total 1,070,527,488" in documented and "active per token 283,309,056" in documented
    with torch.device("meta"):
        model = MoETransformer(config)
    total = sum(p.numel() for p in model.parameters())
    assert total == 1_070_527_488 == config.num_parameters()["total"]
    assert config.num_parameters()["active"] == 283_309_056
    assert raw["trainer"]["precision"] == "bf16-mixed" and raw["trainer"]["num_nodes"] > 1

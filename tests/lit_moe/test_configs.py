"""The shipped MoE configs: they parse, the pair differs only in the router, the 1B model is ~1B."""

from __future__ import annotations

import pytest
import torch
import yaml

from cli import main
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


@pytest.mark.parametrize("name", ["tiny.yaml", "pair_topk.yaml", "pair_default.yaml", "fineweb_edu_1b.yaml"])
def test_config_parses(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / name), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: lit_moe.LanguageModelingModule" in capsys.readouterr().out


def test_pair_differs_only_in_the_router():
    topk = _flatten(yaml.safe_load((CONFIGS / "pair_topk.yaml").read_text()))
    default = _flatten(yaml.safe_load((CONFIGS / "pair_default.yaml").read_text()))
    differing = {key for key in topk.keys() | default.keys() if topk.get(key) != default.get(key)}
    assert differing == {"model.init_args.config.router", "trainer.logger.init_args.version"}
    assert topk["model.init_args.config.router"] == "topk" and default["model.init_args.config.router"] == "default"


def test_1b_config_instantiates_on_meta_with_the_documented_parameter_count():
    raw = yaml.safe_load((CONFIGS / "fineweb_edu_1b.yaml").read_text())
    config = MoETransformerConfig(**raw["model"]["init_args"]["config"])
    documented = (CONFIGS / "fineweb_edu_1b.yaml").read_text()
    assert "total 1,070,527,488" in documented and "active per token 283,309,056" in documented
    with torch.device("meta"):
        model = MoETransformer(config)
    total = sum(p.numel() for p in model.parameters())
    assert total == 1_070_527_488 == config.num_parameters()["total"]
    assert config.num_parameters()["active"] == 283_309_056
    assert raw["trainer"]["precision"] == "bf16-mixed" and raw["trainer"]["num_nodes"] > 1

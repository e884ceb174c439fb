"""The shipped continue / upcycle / generate configs parse as overlays and name real classes."""

from __future__ import annotations

import pytest

from cli import main
from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs/moe"


@pytest.mark.parametrize("name", ["olmoe_continue.yaml", "qwen2_moe_continue.yaml", "qwen3_moe_continue.yaml",
                                  "mixtral_continue.yaml", "upcycle_llama.yaml", "upcycle_qwen3.yaml"])
def test_overlay_parses(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "tiny.yaml"), "--config", str(CONFIGS / name), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "init_from_hf: /models/" in printed and "tokenizer: /models/" in printed


def test_generate_config_parses(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--config", str(CONFIGS / "generate_tiny.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path: lit_moe.generation.PromptDataModule" in capsys.readouterr().out

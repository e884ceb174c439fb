"""Worker for test_fsdp_load: 2 gloo ranks build the model on meta, shard it with FSDP2, stream an HF
folder into the shards (the path configure_model takes) and save the logits and the gathered export.

    python -m torch.distributed.run --nproc_per_node 2 tests/lit_moe/hf/fsdp_load_worker.py FOLDER OUT
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from lit_moe.hf.load import prepare
from lit_moe.hf.pretrained import build_from_hf
from lit_moe.hf.save import save_state_dict_hf
from lit_moe.parallelize import parallelize


def main(folder: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("data_parallel",))
    _, _, config = prepare(folder)
    model = build_from_hf(folder, config, lambda m: parallelize(m, mesh), torch.device("cpu")).eval()
    tokens = torch.arange(2 * 24).reshape(2, 24) % config.vocab_size
    with torch.no_grad():
        logits = model(tokens).logits_BSV
    sharded = any(hasattr(p, "to_local") and p.to_local().shape != p.shape for p in model.parameters())
    state = model.state_dict()  # DTensors: save_hf gathers them one at a time (a collective on every rank)
    if rank == 0:
        torch.save({"logits": logits, "sharded": sharded}, f"{out}/rank0.pt")
    save_state_dict_hf(state, config, f"{out}/export_rank{rank}", max_shard_size="200KB")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

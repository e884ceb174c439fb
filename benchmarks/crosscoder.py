"""Crosscoder training-step throughput vs dictionary_learning's BatchTopK SAE, and harvest throughput
vs a bare forward pass of the two models.

Shape legend: B batch (tokens), M models, D width per model, L dictionary size.

1. Harvest: a dense and an MoE model of our architecture with equal active parameters (d_model 256,
   4 layers; MoE 8 experts top-2 x 512, dense MLP 1024; random weights - speed does not depend on
   training) run on the built-in corpus. One shard = ``--harvest-sequences`` x 256 tokens. Timed:
   ``harvest_batch`` + ``ActivationCacheWriter.write_shard`` (hooks, bf16 cast, write, fsync) vs
   ``model_a(tokens); model_b(tokens)`` under ``torch.no_grad``. Target: harvest >= 0.8x the bare
   forward's tokens/s. The harvest stops each forward once its deepest site (here resid_post.2 of 4
   blocks) is stored; ``--full-forward-sites`` harvests resid_post.3 instead (the last block), which
   runs every block (only the unembedding is skipped).
2. Crosscoder step on the harvested activations (B = 4096 tokens, D = 256 per model, L = 8192, k = 64):
   our ``BatchTopKCrosscoder`` (forward, MSE + auxiliary loss, backward, gradient clipping, Adam) vs
   ``dictionary_learning.trainers.BatchTopKTrainer.update`` (its full step: forward, loss, backward,
   decoder-gradient projection, clipping, Adam, decoder renormalisation) on model A's and on model
   B's activations of the same batch. Per model-activation: the crosscoder reconstructs M = 2
   activations per token, an SAE one, so ratio = 2 x crosscoder tokens/s / SAE tokens/s.
   Target >= 1.0.

Timing: warm-up steps first, then round robin (one step of each per round), medians over rounds.
dictionary-learning 0.1.0 imports nnsight in its package ``__init__`` (which pulls torchvision and a
CUDA torch); it is installed with ``--no-deps`` and its trainer modules are loaded without that
``__init__`` (see ``load_peer``).

Usage:  python benchmarks/crosscoder.py [--rounds 5] [--harvest-sequences 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lit_moe.analysis.activation_cache import ActivationCache, ActivationCacheWriter, harvest_meta  # noqa: E402
from lit_moe.analysis.crosscoder import BatchTopKCrosscoder  # noqa: E402
from lit_moe.analysis.domains import DomainDataModule  # noqa: E402
from lit_moe.analysis.harvest import harvest_batch  # noqa: E402
from lit_moe.model import MoETransformer, MoETransformerConfig  # noqa: E402


def load_peer():
    """dictionary_learning's BatchTopKTrainer without executing the package __init__ (nnsight)."""
    spec = importlib.util.find_spec("dictionary_learning")
    if spec is None:
        raise SystemExit("dictionary-learning is not installed: pip install --no-deps dictionary-learning einops "
                         "(or pip install -e '.[bench]')")
    package = types.ModuleType("dictionary_learning")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["dictionary_learning"] = package
    from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer  # noqa: PLC0415

    return BatchTopKTrainer


def pair_models(width: int) -> dict[str, MoETransformer]:
    common = dict(vocab_size=257, d_model=width, n_layers=4, n_heads=4, max_seq_len=256, num_experts=8, top_k=2,
                  d_expert=2 * width, router="topk", backend="grouped_mm")
    torch.manual_seed(0)
    return {"dense": MoETransformer(MoETransformerConfig(**common, first_k_dense=4)).eval(),
            "moe": MoETransformer(MoETransformerConfig(**common)).eval()}


def round_robin(functions: dict, rounds: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    names = list(functions)
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_harvest(models, folder: str, sequences: int, rounds: int, site: str
                  ) -> tuple[dict[str, float], ActivationCache]:
    data = DomainDataModule(builtin=["docs", "code"], tokens_per_domain=4 * sequences * 256, seq_len=256,
                            batch_size=sequences)
    tokens_NS = torch.cat(list(data.sequences.values()))[:, :-1]
    sites = {"dense": [site], "moe": [site]}
    meta = harvest_meta({"dense": "random", "moe": "random"}, sites, {"dense": 256, "moe": 256}, "bfloat16", 256,
                        len(tokens_NS), sequences, "byte", data.domain_names)
    writer = ActivationCacheWriter(folder, meta, tokens_NS, torch.zeros(len(tokens_NS)))
    batches = tokens_NS.split(sequences)
    state = {"shard": 0}

    def bare():
        with torch.no_grad():
            for model in models.values():
                model(batches[0])

    def harvest():
        shard = state["shard"] % len(batches)
        with torch.no_grad():
            writer.write_shard(shard, harvest_batch(models, sites, batches[shard], torch.bfloat16))
        state["shard"] += 1

    times = round_robin({"bare forward": bare, "harvest": harvest}, rounds, warmup=1)
    for shard in range(len(batches)):  # complete the cache for the crosscoder benchmark
        if not writer.has_shard(shard):
            with torch.no_grad():
                writer.write_shard(shard, harvest_batch(models, sites, batches[shard], torch.bfloat16))
    return times, ActivationCache(folder)


def bench_crosscoder(cache: ActivationCache, site: str, batch: int, dict_size: int, k: int, rounds: int
                     ) -> dict[str, float]:
    trainer_class = load_peer()
    rows = torch.randperm(len(cache), generator=torch.Generator().manual_seed(0))[:batch].sort().values
    a_BMD = cache.activations(rows, [f"dense/{site}", f"moe/{site}"])
    a_BMD = a_BMD * (a_BMD.shape[-1] / a_BMD.pow(2).sum(-1).mean(0)).sqrt().view(1, -1, 1)  # E||a||^2 = D
    torch.manual_seed(0)
    crosscoder = BatchTopKCrosscoder(2, a_BMD.shape[-1], dict_size, k, num_shared=dict_size // 16)
    optimizer = torch.optim.Adam(crosscoder.parameters(), lr=1e-3)
    dead_L = torch.zeros(dict_size, dtype=torch.bool)  # no latent is dead at the start (for either side)

    def crosscoder_step():
        recon_BMD, _ = crosscoder(a_BMD)
        error_BMD = a_BMD - recon_BMD
        loss = error_BMD.pow(2).sum((1, 2)).mean() + crosscoder.auxiliary_loss(a_BMD, error_BMD, dead_L, 256) / 32
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(crosscoder.parameters(), 1.0)
        optimizer.step()

    functions = {"crosscoder (2 models)": crosscoder_step}
    for index, name in enumerate(("dense", "moe")):
        peer = trainer_class(steps=10_000, activation_dim=a_BMD.shape[-1], dict_size=dict_size, k=k, layer=0,
                             lm_name="benchmark", lr=1e-3, warmup_steps=10, device="cpu", seed=0)
        x_BD = a_BMD[:, index].contiguous()
        peer.update(0, x_BD)  # step 0 runs its geometric-median initialisation once
        counter = {"step": 1}

        def peer_step(peer=peer, x_BD=x_BD, counter=counter):
            peer.update(counter["step"], x_BD)
            counter["step"] += 1

        functions[f"dictionary_learning BatchTopK SAE ({name})"] = peer_step
    return round_robin(functions, rounds, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--harvest-sequences", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dict-size", type=int, default=8192)
    parser.add_argument("-k", type=int, default=64)
    parser.add_argument("--harvest-rounds", type=int, default=9)
    parser.add_argument("--full-forward-sites", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's); 1 when other jobs share the cores")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    models = pair_models(256)
    with tempfile.TemporaryDirectory() as folder:
        site = "resid_post.3" if args.full_forward_sites else "resid_post.2"
        harvest_times, cache = bench_harvest(models, folder, args.harvest_sequences, args.harvest_rounds, site)
        tokens = args.harvest_sequences * 256
        print(f"\nHarvest of 2 models (d=256, 4 layers) at {site}, {tokens} tokens per shard, median of "
              f"{args.harvest_rounds} rounds")
        for name, seconds in harvest_times.items():
            print(f"  {name:<14} {seconds * 1e3:9.1f} ms  {tokens / seconds:10.0f} tokens/s")
        ratio = harvest_times["bare forward"] / harvest_times["harvest"]
        print(f"  harvest / bare forward throughput: {ratio:.3f}x (target >= 0.8)")
        step_times = bench_crosscoder(cache, site, args.batch, args.dict_size, args.k, args.rounds)
    print(f"\nTraining step, batch {args.batch}, D=256 per model, dictionary {args.dict_size}, k={args.k}, "
          f"median of {args.rounds} rounds")
    ours = step_times.pop("crosscoder (2 models)")
    print(f"  crosscoder (2 models)  {ours * 1e3:9.1f} ms  {args.batch / ours:8.0f} tokens/s  "
          f"{2 * args.batch / ours:8.0f} model-activations/s")
    for name, seconds in step_times.items():
        ratio = (2 * args.batch / ours) / (args.batch / seconds)
        print(f"  {name:<46} {seconds * 1e3:9.1f} ms  {args.batch / seconds:8.0f} tokens/s  -> crosscoder "
              f"{ratio:.2f}x per model-activation (target >= 1.0)")


if __name__ == "__main__":
    main()

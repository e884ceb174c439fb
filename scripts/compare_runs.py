"""Compare logged scalars of several runs, layer by layer.

    .venv/bin/python scripts/compare_runs.py runs/moe_pair/topk runs/moe_pair/default \
        --tags grad_fidelity_cos val/ppl

Prints, for each tag (``grad_fidelity_cos`` expands to every ``moe/layer*/grad_fidelity_cos``), the
mean over the logged steps (``--last N``: over the last N points) and the final value of each run.
"""

from __future__ import annotations

import argparse
import statistics

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def load(run_dir: str) -> EventAccumulator:
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="TensorBoard run directories (the version_* folders)")
    parser.add_argument("--tags", nargs="+", default=["grad_fidelity_cos", "val/ppl"])
    parser.add_argument("--last", type=int, default=0, help="average only the last N logged points")
    args = parser.parse_args()
    runs = {run: load(run) for run in args.runs}
    all_tags = sorted(set().union(*(set(e.Tags()["scalars"]) for e in runs.values())))
    for wanted in args.tags:
        tags = [t for t in all_tags if t == wanted or t.endswith("/" + wanted)]
        for tag in tags:
            cells = []
            for run, events in runs.items():
                if tag not in events.Tags()["scalars"]:
                    cells.append(f"{run}: -")
                    continue
                values = [e.value for e in events.Scalars(tag)]
                window = values[-args.last:] if args.last else values
                cells.append(f"{run}: mean {statistics.fmean(window):.4f} final {values[-1]:.4f} (n={len(window)})")
            print(f"{tag:36s} " + " | ".join(cells))


if __name__ == "__main__":
    main()

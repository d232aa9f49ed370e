"""Benchmark: transformers' Trainer against crit's plain torch loop, on the same data and settings.

Issue 13 asks for Trainer (or trl's SFTTrainer) rather than a hand-written loop, unless
the hand-written one is measured faster. Both loops live in crit.trainer.finetune and
take the same model (the embedded SmolLM2-135M with LoRA r 8 on every linear layer),
the same tokenised examples (loss on the answer only), the same optimiser settings and
the same number of steps; this runs each one in turn, in the same process, and prints
seconds per step, the ratio, and the loss curves.

The data is the shipped student's: `DATA_ONLY=1 bash trainer/build_student.sh` writes it
to build/student-work-0/data (no model involved, about a minute).

    python benchmarks/trainer_loop_speed.py [--data build/student-work-0/data] [--steps 8] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from crit.trainer.finetune import TrainConfig, finetune


def run(loop: str, data: str, steps: int, batch_size: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(data=data, out=out, max_steps=steps, batch_size=batch_size, lr=5e-4, r=8, alpha=16, seed=0,
                          loop=loop)  # type: ignore[arg-type]
        path = finetune(cfg)
        return json.loads((path / "manifest.json").read_text())["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="build/student-work-0/data")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not (Path(args.data) / "train.jsonl").is_file():
        raise SystemExit(f"{args.data}/train.jsonl not found: run `DATA_ONLY=1 bash trainer/build_student.sh` first")

    results = {loop: run(loop, args.data, args.steps, args.batch_size) for loop in ("hand", "trainer")}
    for loop, m in results.items():
        print(f"{loop:>7}: {m['seconds_per_step']:.2f} s/step over {m['steps']} steps of {args.batch_size} "
              f"(train {m['train_seconds']:.1f} s, whole run {m['total_seconds']:.1f} s); "
              f"loss {' '.join(f'{x:.3f}' for x in m['loss_per_step'])}; val {m['val_loss_before']} -> {m['val_loss_after']}")
    ratio = results["trainer"]["seconds_per_step"] / results["hand"]["seconds_per_step"]
    print(f"Trainer / hand loop, seconds per step: {ratio:.2f}x")


if __name__ == "__main__":
    main()

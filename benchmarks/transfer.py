"""Transfer learning offline: held-out mIoU with and without a pretrained encoder.

On the built-in data (rendered on first use, nothing downloaded):

1. ``pretrain``: `visionjax/configs/transfer_digits_resnet.py`, a small
   ResNet classifying ``digit_scenes/digits32``, once into
   ``<workdir>/pretrain`` (a finished run there is reused: resuming it at its
   last step only re-evaluates).
2. per seed and arm, `visionjax/configs/transfer_scenes_unet.py` (a U-Net
   whose encoder is that ResNet's trunk) on ``digit_scenes/scenes64``, the
   same number of steps, batches and data order:
     scratch   random initialization;
     transfer  ``--config.init_from=<pretrain>`` (its best checkpoint: the
               encoder loads, decoder and classifier start random);
     frozen    as transfer, with the encoder frozen for the first
               ``--freeze_steps`` steps (decoder first, then everything).

Each run is ``experiments/train.py`` in its own process, as a user runs it;
the table gives the held-out mIoU (the 1,000 test scenes) per seed, and per
arm the mean and the mean difference to ``scratch``.

  python benchmarks/transfer.py [--seeds 0,1,2] [--steps 800] \\
      [--arms scratch,transfer] [--workdir /tmp/visionjax_transfer]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "visionjax", "configs")  # experiments/configs links here
ARMS = ("scratch", "transfer", "frozen")


def train(config: str, workdir: str, *flags: str) -> tuple[dict, float]:
  """Runs experiments/train.py; returns its final metrics and wall seconds."""
  cmd = [sys.executable, os.path.join(REPO, "experiments", "train.py"),
         f"--config={os.path.join(CONFIGS, config)}", f"--workdir={workdir}",
         "--config.progress_bar=False", *flags]
  t = time.time()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  seconds = time.time() - t
  if proc.returncode:
    sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
  for line in proc.stdout.splitlines():
    if line.startswith("init_from:") or line.startswith("  "):
      print(f"    {line}")
  with open(os.path.join(workdir, "final_metrics.json")) as f:
    return json.load(f), seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/visionjax_transfer")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--steps", type=int, default=800, help="segmentation steps per run")
  parser.add_argument("--arms", default="scratch,transfer")
  parser.add_argument("--freeze_steps", type=int, default=150,
                      help="'frozen' arm: steps with the encoder frozen")
  args = parser.parse_args()
  arms = args.arms.split(",")
  for arm in arms:
    if arm not in ARMS:
      sys.exit(f"error: --arms: {arm!r} is not one of {ARMS}")
  seeds = [int(s) for s in args.seeds.split(",")]

  pretrain = os.path.join(args.workdir, "pretrain")
  metrics, seconds = train("transfer_digits_resnet.py", pretrain)
  print(f"pretrain (digits32 classification): test accuracy {metrics['accuracy']:.4f}, "
        f"{seconds:.0f} s", flush=True)

  flags = {"scratch": [],
           "transfer": [f"--config.init_from={pretrain}"],
           "frozen": [f"--config.init_from={pretrain}", "--config.freeze=^encoder/",
                      f"--config.freeze_until_step={args.freeze_steps}"]}
  results: dict[str, dict[int, float]] = {arm: {} for arm in arms}
  for seed in seeds:
    for arm in arms:
      wd = os.path.join(args.workdir, f"{arm}.seed{seed}.steps{args.steps}")
      metrics, seconds = train("transfer_scenes_unet.py", wd, f"--config.seed={seed}",
                               f"--config.num_train_steps={args.steps}", *flags[arm])
      results[arm][seed] = metrics["miou"]
      print(f"seed {seed} {arm:9s} mIoU {metrics['miou']:.4f}  pixel accuracy "
            f"{metrics['pixel_accuracy']:.4f}  {seconds:.0f} s", flush=True)

  print(f"\nheld-out mIoU after {args.steps} steps (batch 8), digit_scenes/scenes64 test")
  print("| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | vs scratch |")
  print("| --- |" + " --- |" * (len(seeds) + 2))
  for arm in arms:
    vals = [results[arm][s] for s in seeds]
    diff = ("" if arm == "scratch" or "scratch" not in results else
            f"{statistics.mean(results[arm][s] - results['scratch'][s] for s in seeds):+.4f}")
    print(f"| {arm} | " + " | ".join(f"{v:.4f}" for v in vals)
          + f" | {statistics.mean(vals):.4f} | {diff} |")


if __name__ == "__main__":
  main()

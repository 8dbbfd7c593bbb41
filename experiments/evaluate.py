"""Evaluate a trained run's checkpoint without training.

  python experiments/evaluate.py --workdir=runs/unet_scenes [--checkpoint=best|latest|STEP]
      [--split=test]

Reads the run's config.json, restores the parameters (no optimizer state) and
writes metrics and pictures under <workdir>/eval/<step>/. Works on gs:// too.
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "evaluate", *sys.argv[1:]])

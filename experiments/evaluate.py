"""`visionjax evaluate` run from a source checkout (flags and docs: visionjax/cli/evaluate.py).

  python experiments/evaluate.py --workdir=runs/unet [--checkpoint=best|latest|STEP]
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "evaluate", *sys.argv[1:]])

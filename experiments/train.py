"""Train and evaluate a visionjax model from an ml_collections config.

  python experiments/train.py --config=experiments/configs/unet_scenes.py \
      --workdir=/tmp/unet --config.num_train_steps=2000

Re-running on the same workdir resumes from its newest checkpoint.
"""
import sys

from visionjax.cli import main

if __name__ == "__main__":
  main([sys.argv[0], "train", *sys.argv[1:]])

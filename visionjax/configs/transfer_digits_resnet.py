"""Transfer learning, step 1: a small ResNet learns the built-in 32x32 digits.

Its trunk (``encoder/``: the CIFAR stem, a 3x3 convolution without pooling,
then one basic block per stage, widths 16-128, strides 1-8) is the encoder of
``transfer_scenes_unet.py``, which starts from this run's best checkpoint
(``--config.init_from=<this workdir>``). `benchmarks/transfer.py` runs both
and compares against the same U-Net from scratch.

  python experiments/train.py --config=experiments/configs/transfer_digits_resnet.py \\
      --workdir=/tmp/transfer/pretrain
"""
from visionjax.train.config import base_config

# Shared with transfer_scenes_unet.py: the trunk's shape must match to load.
ENCODER = {"stage_sizes": (1, 1, 1, 1), "widths": (16, 32, 64, 128), "stem_width": 16,
           "stem": "cifar"}


def get_config():
  c = base_config()
  c.task = "classification"
  c.model.name = "resnet18"
  c.model.update(ENCODER)
  c.dataset.name = "digit_scenes/digits32"
  c.batch_size = 64
  c.eval_batch_size = 250
  c.num_train_steps = 800
  c.log_every_steps = 100
  c.eval_every_steps = 400
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 50
  c.task_kwargs.label_smoothing = 0.1
  c.checkpoint.every_steps = 400
  c.checkpoint.best_metric = "accuracy"
  c.num_visualizations = 0
  return c

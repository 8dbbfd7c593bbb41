"""Transfer learning, step 2: a U-Net with a ResNet encoder segments the 64x64 scenes.

The encoder is `transfer_digits_resnet.py`'s trunk (same module, same
variable paths: ``encoder/...``), so a digits run's checkpoint loads into it
with no mapping; the decoder and the classifier start random, the digit
classifier's ``fc`` is reported unused:

  python experiments/train.py --config=experiments/configs/transfer_scenes_unet.py \\
      --workdir=/tmp/transfer/unet --config.init_from=/tmp/transfer/pretrain

Without ``init_from`` it is the same network from scratch. ``--config.freeze=
'^encoder/' --config.freeze_until_step=N`` trains the decoder alone for N steps
first. `benchmarks/transfer.py` compares the two at equal step budgets.
"""
from visionjax.train.config import base_config

ENCODER = {"stage_sizes": (1, 1, 1, 1), "widths": (16, 32, 64, 128), "stem_width": 16,
           "stem": "cifar"}


def get_config():
  c = base_config()
  c.task = "segmentation"
  c.model.name = "unet"
  c.model.encoder = "resnet18"
  c.model.encoder_kwargs = ENCODER
  # Decoder widths at strides 1, 2, 4 (the encoder's layer1..3); its stride-8
  # layer4 is the bottleneck (the last entry is unused with an encoder). The
  # ImageNet stem (7x7/2 + pool, strides 2..32) stayed on the all-background
  # plateau for 600 steps with or without transfer (mIoU 0.104 both, seed 0).
  c.model.features = (16, 32, 64, 128)
  c.task_kwargs.foreground_weight = 3.0  # as unet_scenes.py: digits are ~10% of pixels
  c.task_kwargs.dice_weight = 0.5
  c.dataset.name = "digit_scenes/scenes64"
  c.batch_size = 8
  c.eval_batch_size = 100
  c.num_train_steps = 800
  c.log_every_steps = 50
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.weight_decay = 1e-4
  c.checkpoint.every_steps = 0
  c.checkpoint.best_metric = "miou"
  c.num_visualizations = 0
  c.init_from = ""  # --config.init_from=<a transfer_digits_resnet.py workdir>
  return c

"""ResNet-18 (CIFAR stem: 3x3 conv, no max-pool) on CIFAR-10.

The usual recipe: random 4-pixel pad-and-crop and horizontal flips, per-channel
normalization with the CIFAR-10 training-set statistics, SGD with Nesterov
momentum 0.9, learning rate 0.1 with a short warmup and cosine decay, L2
weight decay 5e-4, batch 128, 200 epochs (391 steps each). Evaluated on the
10,000 test images every 10 epochs.

The stock TFDS `cifar10` builder downloads cifar-10-binary.tar.gz itself; on
a machine without network put that file into the manual download folder
(``<data_dir>/downloads/manual`` or ``--config.dataset.manual_dir``).

  python experiments/train.py --config=experiments/configs/resnet_cifar10.py \\
      --workdir=/tmp/resnet_cifar10
"""
from visionjax.train.config import base_config

STEPS_PER_EPOCH = 391  # ceil(50,000 / 128)


def get_config():
  c = base_config()
  c.task = "classification"
  c.model.name = "resnet18_cifar"
  c.dataset.name = "cifar10"
  c.dataset.train_split = "train"
  c.dataset.eval_split = "test"
  c.dataset.mean = (0.4914, 0.4822, 0.4465)
  c.dataset.std = (0.2470, 0.2435, 0.2616)
  c.dataset.augment = ("pad_crop", "horizontal_flip")
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_train_steps = 200 * STEPS_PER_EPOCH
  c.log_every_steps = 100
  c.eval_every_steps = 10 * STEPS_PER_EPOCH
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = STEPS_PER_EPOCH
  c.checkpoint.every_steps = 10 * STEPS_PER_EPOCH
  c.checkpoint.best_metric = "accuracy"
  c.num_visualizations = 16
  return c

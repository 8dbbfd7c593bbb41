"""DeepLabV3 (atrous ResNet-101, output stride 16) on Cityscapes (fine).

Recipe after Chen et al. 2017 (Sec. 4.2): the 2,975 finely annotated train
images, 768x768 crops of images randomly rescaled by 0.5-2.0 (of the
1024x2048 original), horizontal flips, batch 8, SGD momentum 0.9, learning
rate 0.01, weight decay 1e-4, 90k iterations. Labels: the 34 label ids mapped
to the 19 training classes, everything else 255 (ignored).

Evaluation runs on the 500 val images at full 1024x2048 resolution, so the
mIoU is the benchmark's (no label is resampled).

Gaps to the paper, outside this file: poly learning-rate decay (cosine here),
ImageNet-pretrained weights (none in visionjax), and the paper's output
stride 8 at test time (use `deeplabv3_resnet101_os8` to train and test at 8).

Cityscapes needs registration: download leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com/downloads/
into the manual download folder (``<data_dir>/downloads/manual`` or
``--config.dataset.manual_dir``), without unpacking them.

  python experiments/train.py --config=experiments/configs/deeplabv3_cityscapes.py \\
      --workdir=/tmp/deeplabv3_cityscapes --config.dataset.manual_dir=/path/to/zips
"""
from visionjax.train.config import base_config


def get_config():
  c = base_config()
  c.task = "segmentation"
  c.model.name = "deeplabv3_resnet101"
  c.dataset.name = "cityscapes/semantic_segmentation"
  c.dataset.train_split = "train"
  c.dataset.eval_split = "validation"
  c.dataset.image_size = (1024, 2048)  # evaluation: full resolution
  c.dataset.augment = (
      ("scale_jitter", {"size": (768, 768), "min_scale": 0.5, "max_scale": 2.0}),
      "horizontal_flip")
  c.dataset.mean = (0.485, 0.456, 0.406)  # ImageNet statistics
  c.dataset.std = (0.229, 0.224, 0.225)
  c.dataset.shuffle_buffer = 500  # encoded PNG frames are ~2 MB each
  c.batch_size = 8
  c.eval_batch_size = 8
  c.num_train_steps = 90_000
  c.log_every_steps = 100
  c.eval_every_steps = 10_000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 0
  c.checkpoint.every_steps = 5_000
  c.checkpoint.best_metric = "miou"
  c.num_visualizations = 4
  return c

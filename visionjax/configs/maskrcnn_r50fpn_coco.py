"""Mask R-CNN R50-FPN on COCO 2017 for accelerators: torchvision's recipe.

torchvision's ``maskrcnn_resnet50_fpn`` (37.9 box AP / 34.6 mask AP on
val2017 with an ImageNet-pretrained trunk): batch 16, SGD with momentum 0.9,
learning rate 0.02 (torchvision warms it up over 1,000 steps; the
'piecewise' schedule here has no warm-up), weight decay 1e-4, 26 epochs with
the rate divided by 10 after epochs 16 and 22, horizontal flips. Here the
images are fitted into 800×1088 keeping their aspect ratio (padding the
rest; torchvision resizes the short side to 800, at most 1333), and the
trunk starts from scratch unless ``config.init_from`` names converted weights
(expect far lower AP from scratch in 26 epochs). Not trained on the dev
machine (no COCO, no accelerator); the config validates in the tests.

COCO's own layout read as your own data (``coco_json``)::

  <path>/annotations/instances_train2017.json, <path>/train2017/*.jpg
  <path>/annotations/instances_val2017.json,   <path>/val2017/*.jpg

  visionjax train --config=maskrcnn_r50fpn_coco --workdir=gs://bucket/maskrcnn \
      --config.dataset.path=/data/coco
"""
from visionjax.train.config import base_config

EPOCH = 7_329  # 117,266 train2017 images with annotations / 16


def get_config():
  c = base_config()
  c.task = "instance_segmentation"
  c.model.name = "maskrcnn_r50_fpn"
  c.dataset.name = "coco_json"
  c.dataset.path = "/path/to/coco"
  c.dataset.train_split = "train2017"
  c.dataset.eval_split = "val2017"
  c.dataset.image_size = (800, 1088)
  c.dataset.augment = ("horizontal_flip",)
  c.dataset.mean = (0.485, 0.456, 0.406)  # ImageNet statistics (the trunk's convention)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.task_kwargs.max_boxes = 100            # COCO images hold up to ~93 objects
  c.task_kwargs.mask_max_sampling_ratio = 4
  c.batch_size = 16
  c.eval_batch_size = 16
  c.num_train_steps = 26 * EPOCH
  c.log_every_steps = 100
  c.eval_every_steps = 2 * EPOCH
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.02
  c.optimizer.schedule = "piecewise"
  c.optimizer.boundaries = (16 / 26, 22 / 26)
  c.optimizer.decay_factor = 0.1
  c.optimizer.weight_decay = 1e-4
  c.checkpoint.every_steps = EPOCH
  c.checkpoint.best_metric = "mask_ap"
  c.num_visualizations = 8
  # float32: in bfloat16 the proposals' pixel coordinates (up to 1088) would
  # round to 4-8 px before NMS and RoIAlign.
  return c

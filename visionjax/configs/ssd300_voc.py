"""SSD300 (VGG-16) on PASCAL VOC: the paper's recipe (Liu et al. 2016).

Train on VOC2007 trainval + VOC2012 trainval (16,551 images), test on VOC2007
test (4,952); the paper's SSD300 reaches 77.2 mAP (VOC07 11-point, IoU 0.5).
Recipe: 300×300 inputs; SSD data augmentation (photometric distortion,
zoom-out "expand" up to 4×, IoU-constrained random crop, horizontal flip);
SGD with momentum 0.9, weight decay 5e-4, batch 32, learning rate 1e-3 for
80k iterations then 1e-4 and 1e-5 for 20k each (120k in all); matching at IoU
0.5, 3:1 hard negatives, α = 1; NMS 0.45, top 200 per image.

``voc/2007+voc/2012`` trains on the train+validation splits of both and
evaluates on the first one's ``test`` (see visionjax.data.adapters).

Gap to the paper's number: the paper starts from ImageNet-pretrained VGG-16
(conv weights plus subsampled fc6/fc7); visionjax ships no pretrained
weights, so this trains from scratch and should be expected to land well
below 77.2 (not run here: no VOC data or accelerator on the dev machine).

  python experiments/train.py --config=experiments/configs/ssd300_voc.py \
      --workdir=/tmp/ssd300_voc --config.dataset.data_dir=/path/to/tfds
"""
from visionjax.train.config import base_config

SSD_AUGMENT = ("ssd_photometric", "zoom_out", "iou_random_crop", "horizontal_flip")


def get_config():
  c = base_config()
  c.task = "detection"
  c.model.name = "ssd300_vgg16"
  c.dataset.name = "voc/2007+voc/2012"
  c.dataset.train_split = "train+validation"
  c.dataset.eval_split = "test"
  c.dataset.image_size = (300, 300)
  c.task_kwargs.max_boxes = 64          # VOC images hold at most 56 objects
  c.dataset.augment = SSD_AUGMENT
  # ImageNet statistics (the backbone convention; the Caffe model subtracts
  # the mean pixel 104, 117, 123 and does not divide).
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.task_kwargs.match_iou = 0.5
  c.task_kwargs.neg_pos_ratio = 3.0
  c.task_kwargs.nms_iou = 0.45
  c.task_kwargs.max_detections = 200
  c.batch_size = 32
  c.eval_batch_size = 32
  c.num_train_steps = 120_000
  c.log_every_steps = 100
  c.eval_every_steps = 10_000
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "piecewise"
  c.optimizer.boundaries = (80_000 / 120_000, 100_000 / 120_000)
  c.optimizer.decay_factor = 0.1
  c.optimizer.weight_decay = 5e-4
  c.checkpoint.every_steps = 5_000
  c.checkpoint.best_metric = "map50_voc07"
  c.num_visualizations = 8
  return c

"""DeepLabV3 (atrous ResNet-101, output stride 16) on PASCAL VOC 2012.

The recipe of Chen et al. 2017 (Sec. 4.1): train on the 10,582-image
"train_aug" set (VOC 2012 train + SBD, `voc_segmentation/2012_sbd`), evaluate
mIoU on the 1,449 val images; 513x513 crops of images randomly rescaled by
0.5-2.0, horizontal flips, batch 16, SGD momentum 0.9, learning rate 0.007,
weight decay 1e-4, 30k iterations.

Evaluation is exact and at the original resolution: VOC images are at most
500x500, so the eval pipeline pads them to 513x513 (mask 255 = ignored)
without resampling a single label.

Gaps to the paper, outside this file: the paper decays the learning rate
with the "poly" rule and starts from ImageNet-pretrained weights; the
trainer offers cosine decay (used here) and visionjax has no pretrained
weights, so expect a lower mIoU from scratch.

Files (used from the manual download folder, else downloaded):
VOCtrainval_11-May-2012.tar and SBD's benchmark.tgz; see
`visionjax.data.voc_segmentation`.

  python experiments/train.py --config=experiments/configs/deeplabv3_voc_seg.py \\
      --workdir=/tmp/deeplabv3_voc --config.dataset.data_dir=/path/to/tfds
"""
from visionjax.train.config import base_config


def get_config():
  c = base_config()
  c.task = "segmentation"
  c.model.name = "deeplabv3_resnet101"
  c.dataset.name = "voc_segmentation/2012_sbd"
  c.dataset.train_split = "train"
  c.dataset.eval_split = "validation"
  c.dataset.image_size = (513, 513)
  c.dataset.augment = (("scale_jitter", {"min_scale": 0.5, "max_scale": 2.0}),
                       "horizontal_flip")
  c.dataset.mean = (0.485, 0.456, 0.406)  # ImageNet statistics
  c.dataset.std = (0.229, 0.224, 0.225)
  c.batch_size = 16
  c.eval_batch_size = 8
  c.num_train_steps = 30_000
  c.log_every_steps = 100
  c.eval_every_steps = 5_000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.007
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 0
  c.checkpoint.every_steps = 2_500
  c.checkpoint.best_metric = "miou"
  c.num_visualizations = 6
  return c

"""The built-in `digit_scenes` dataset: labels agree with each other and with
the source digits; train and test never share a digit image."""
import numpy as np
import pytest
from sklearn.datasets import load_digits
import spine_fixtures
import tensorflow_datasets as tfds

from visionjax.data import scenes


def test_train_and_test_digit_sources_are_disjoint_and_cover_all_digits():
  tr_img, tr_lab = scenes.digit_sources("train")
  te_img, te_lab = scenes.digit_sources("test")
  assert len(tr_lab) + len(te_lab) == 1797
  flat = lambda a: {x.tobytes() for x in a.reshape(len(a), -1)}
  # All 1,797 raw digits are distinct images, so "disjoint" is checkable by
  # content: no test digit image appears in the training sources.
  everything = flat(load_digits().images.astype(np.float32) / 16.0)
  assert len(everything) == 1797
  assert flat(tr_img) | flat(te_img) == everything
  assert not flat(tr_img) & flat(te_img)
  for c in range(10):  # stratified 80/20
    n = (tr_lab == c).sum() + (te_lab == c).sum()
    assert abs((te_lab == c).sum() - 0.2 * n) <= 1


@pytest.mark.parametrize("spec", [scenes.SceneSpec(),
                                  scenes.SceneSpec(height=32, width=32, max_objects=1,
                                                   min_size=22, max_size=26, centre_jitter=2)])
def test_boxes_masks_and_labels_agree(spec):
  for _, s in zip(range(40), (x for _, x in scenes.generate("test", spec, seed=3))):
    h, w = s["mask"].shape
    assert s["image"].shape == (h, w, 3) and s["image"].dtype == np.uint8
    assert 1 <= len(s["bbox"]) <= spec.max_objects
    areas = []
    for box, lab in zip(s["bbox"], s["bbox_label"]):
      # The rendered scene is a TFDS record: boxes in BBoxFeature's yxyx.
      y0, x0, y1, x1 = np.round(box * [h, w, h, w]).astype(int)
      inside = s["mask"][y0:y1, x0:x1]
      # The box is the tight extent of its digit's mask pixels.
      ys, xs = np.nonzero(inside == lab + 1)
      assert ys.min() == 0 and xs.min() == 0
      assert ys.max() == y1 - y0 - 1 and xs.max() == x1 - x0 - 1
      areas.append((inside == lab + 1).sum())
    assert s["label"] == s["bbox_label"][int(np.argmax(areas))]
    # Every non-background mask pixel belongs to one of the boxes' classes.
    assert set(np.unique(s["mask"])) - {0} <= set(s["bbox_label"] + 1)


def test_rendering_is_deterministic_and_seed_dependent():
  spec = scenes.SceneSpec()
  a = [x for _, x in zip(range(3), (s for _, s in scenes.generate("train", spec, seed=0)))]
  b = [x for _, x in zip(range(3), (s for _, s in scenes.generate("train", spec, seed=0)))]
  c = [x for _, x in zip(range(3), (s for _, s in scenes.generate("train", spec, seed=1)))]
  for x, y, z in zip(a, b, c):
    np.testing.assert_array_equal(x["image"], y["image"])
    assert not np.array_equal(x["image"], z["image"])


def test_tfds_builder_round_trips_the_rendered_scene(tiny_data_dir):
  from visionjax.data import builtin
  builder = tfds.builder("digit_scenes/tiny", data_dir=tiny_data_dir)
  assert builder.info.splits["train"].num_examples == 64
  assert builder.info.splits["test"].num_examples == 32
  cfg = builtin.DigitScenes.BUILDER_CONFIGS[2]
  expected = dict(scenes.generate("test", cfg.spec, seed=cfg.seed))
  ds = builder.as_dataset(split="test", shuffle_files=False)
  seen = 0
  for ex in tfds.as_numpy(ds):
    # TFDS stores examples in a shuffled order: find ours by image content.
    match = [s for s in expected.values() if np.array_equal(s["image"], ex["image"])]
    assert len(match) == 1
    s = match[0]
    np.testing.assert_array_equal(ex["segmentation_mask"][..., 0], s["mask"])
    np.testing.assert_array_equal(ex["instance_mask"][..., 0], s["instances"])
    np.testing.assert_allclose(ex["objects"]["bbox"], s["bbox"], atol=1e-6)
    np.testing.assert_array_equal(ex["objects"]["label"], s["bbox_label"])
    assert ex["label"] == s["label"]
    seen += 1
  assert seen == 32


def test_localization_label_is_the_class_of_its_box(tiny_data_dir):
  # Independent reference: the rendered scenes (NumPy). Each evaluation
  # example's (label, box) must be the largest box and that box's own class,
  # even where the scene label (most ink) names another digit. The rendered
  # boxes are the TFDS record's yxyx; the task's box is normalized xyxy.
  from spine_fixtures import tiny_config

  from visionjax.data import builtin
  cfg = builtin.DigitScenes.BUILDER_CONFIGS[2]
  rendered = list(dict(scenes.generate("test", cfg.spec, seed=cfg.seed)).values())
  config = tiny_config(tiny_data_dir, task="localization", eval_batch_size=32)
  batch = next(spine_fixtures.eval_batches(config))
  mean, std = np.asarray(config.dataset.mean), np.asarray(config.dataset.std)
  for image, label, box in zip(batch["image"], batch["label"], batch["box"]):
    pixels = np.round((image * std + mean) * 255)
    s = [s for s in rendered if np.array_equal(s["image"], pixels)][0]
    b = np.asarray(s["bbox"])  # (ymin, xmin, ymax, xmax)
    i = np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert label == s["bbox_label"][i]
    ymin, xmin, ymax, xmax = b[i]
    np.testing.assert_allclose(box, [xmin, ymin, xmax, ymax], atol=1e-6)

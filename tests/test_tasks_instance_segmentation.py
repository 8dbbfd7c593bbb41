"""The instance-segmentation task with a real (tiny) Mask R-CNN.

One module fixture trains a tiny model on a 2-image batch of two ellipses
each (one jitted step, compiled once): the gradients of the first step reach
every head, the loss falls by a large factor, and the evaluation of the
trained model's real inference outputs equals an independent reference:
torchvision's ``paste_masks_in_image`` and pycocotools' ``COCOeval`` ('segm'
and 'bbox'). The task contract (targets, checks, exactness over padding,
pictures) is `tests/test_tasks_contract.py`'s shared case.
"""
import jax
import jax.numpy as jnp
import numpy as np
from numpy_init import numpy_init
import optax
import pytest

from visionjax.models.maskrcnn import MaskRCNN
from visionjax.tasks import create

torchvision = pytest.importorskip("torchvision")
from coco_reference import run_pycocotools  # noqa: E402
from pycocotools import mask as mask_util  # noqa: E402
import torch  # noqa: E402
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402

H = W = 64
K = 2
STEPS = 50
# Unoptimised XLA code compiles much faster; the tiny model runs in ms anyway.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _scene(shift):
  """Two ellipses (classes 0 and 1, instance ids 1 and 2) on a dark image,
  a padded third box slot, and a void (255) band around the first."""
  yy, xx = np.mgrid[:H, :W]
  img = np.full((H, W, 3), 0.1, np.float32)
  inst = np.zeros((H, W), np.int32)
  boxes = np.zeros((3, 4), np.float32)
  for k, (cy, cx, ry, rx, colour) in enumerate([(18 + shift, 20, 10, 8, (1, .3, .2)),
                                                (44, 42 - shift, 12, 14, (.2, .9, .4))]):
    m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if k == 0:
      inst[(((yy - cy) / (ry + 1.5)) ** 2 + ((xx - cx) / (rx + 1.5)) ** 2 <= 1)] = 255
    inst[m] = k + 1
    img[m] = colour
    ys, xs = np.nonzero(m)
    boxes[k] = [xs.min() / W, ys.min() / H, (xs.max() + 1) / W, (ys.max() + 1) / H]
  return {"image": img, "boxes": boxes, "box_labels": np.array([0, 1, 0], np.int32),
          "box_valid": np.array([True, True, False]), "instances": inst,
          "box_instance": np.array([1, 2, 0], np.int32)}


def _batch():
  scenes = [_scene(0), _scene(5)]
  return {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}


MODEL = MaskRCNN(num_classes=K, stage_sizes=(1, 1, 1, 1), block="basic", widths=(8, 16, 16, 32),
                 stem_width=8, fpn_features=16, representation=32, mask_layers=(16,),
                 anchor_sizes=((12,), (20,), (32,), (48,), (64,)), pre_nms_top_n=100,
                 post_nms_top_n=50, roi_batch_size=32, detections_per_image=10,
                 box_score_threshold=0.0)


def _init(seed=0):
  return numpy_init(jax.eval_shape(MODEL.init, jax.random.key(0), jnp.zeros((1, H, W, 3))), seed)


@pytest.fixture(scope="module")
def trained():
  batch = _batch()
  task = create("instance_segmentation", K, max_boxes=3)
  variables = _init()
  tx = optax.adam(5e-3)

  def step(params, opt, stats, key):
    def loss_fn(p):
      out, new = MODEL.apply({"params": p, "batch_stats": stats}, batch["image"], train=True,
                             rngs={"dropout": key}, mutable=["batch_stats"],
                             **task.model_inputs(batch))
      total, count = task.loss(out, batch)
      return total / count, (new["batch_stats"], task.train_sums(out, batch))
    (loss, (stats, sums)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, stats, loss, sums, grads

  params, stats = variables["params"], variables["batch_stats"]
  opt = tx.init(params)
  compiled = jax.jit(step).lower(params, opt, stats, jax.random.key(0)).compile(FAST_COMPILE)
  losses, grads0, sums0 = [], None, None
  for i in range(STEPS):
    params, opt, stats, loss, sums, grads = compiled(params, opt, stats, jax.random.key(i))
    losses.append(float(loss))
    if i == 0:
      grads0, sums0 = jax.device_get(grads), jax.device_get(sums)
  return dict(task=task, batch=batch, params=params, stats=stats, losses=losses, grads0=grads0,
              sums0=sums0)


def test_gradients_reach_every_head(trained):
  g = trained["grads0"]
  norms = {k: float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(v))))
           for k, v in g.items()}
  heads = {"backbone", "fpn", "rpn_conv", "rpn_cls", "rpn_bbox", "fc6", "fc7", "cls_score",
           "bbox_pred", "mask_fcn1", "conv5_mask", "mask_fcn_logits"}
  assert set(norms) == heads
  assert all(np.isfinite(n) and n > 0 for n in norms.values()), norms
  # Each of the five losses is live at the first step.
  summary = trained["task"].summarize_train(trained["sums0"])
  for k in ("rpn_objectness", "rpn_box", "classification", "box", "mask"):
    assert summary[f"{k}_loss"] > 0, (k, summary)
  assert summary["positive_rois_per_image"] >= 2  # the ground truth is sampled itself


def test_tiny_model_overfits_two_images(trained):
  losses = trained["losses"]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0] / 8, (losses[0], losses[-1])


def _reference(task, batch, out):
  """pycocotools on the same detections, pasted by torchvision; ground truth
  from the instance map (void pixels belong to no instance)."""
  gt = {"images": [{"id": i, "height": H, "width": W} for i in range(2)],
        "categories": [{"id": c} for c in range(K)], "annotations": []}
  dets = {"segm": [], "bbox": []}
  for i in range(2):
    for g in range(3):
      if not batch["box_valid"][i, g]:
        continue
      m = np.asfortranarray((batch["instances"][i] == batch["box_instance"][i, g]).astype(np.uint8))
      x0, y0, x1, y1 = batch["boxes"][i, g] * np.array([W, H, W, H])
      gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "iscrowd": 0,
                                "category_id": int(batch["box_labels"][i, g]),
                                "segmentation": mask_util.encode(m), "area": float(m.sum()),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    keep = np.asarray(out["valid"][i], bool)
    boxes = np.asarray(out["boxes"][i])[keep]
    probs = np.asarray(out["masks"][i])[keep]
    pasted = paste_masks_in_image(torch.tensor(probs)[:, None], torch.tensor(boxes), (H, W),
                                  padding=1)[:, 0].numpy() > 0.5
    for box, m, s, lab in zip(boxes, pasted, np.asarray(out["scores"][i])[keep],
                              np.asarray(out["labels"][i])[keep]):
      common = {"image_id": i, "score": float(s), "category_id": int(lab) - 1}
      dets["segm"].append({**common, "segmentation": mask_util.encode(
          np.asfortranarray(m.astype(np.uint8)))})
      dets["bbox"].append({**common, "bbox": [float(box[0]), float(box[1]),
                                              float(box[2] - box[0]), float(box[3] - box[1])]})
  return {t: run_pycocotools(gt, dets[t], t) for t in ("segm", "bbox")}


def test_evaluation_equals_pycocotools_on_the_models_outputs(trained):
  task, batch = trained["task"], trained["batch"]
  apply = jax.jit(lambda p, s, x: MODEL.apply({"params": p, "batch_stats": s}, x)).lower(
      trained["params"], trained["stats"], batch["image"]).compile(FAST_COMPILE)
  out = jax.device_get(apply(trained["params"], trained["stats"], batch["image"]))
  assert out["masks"].shape == (2, 10, 28, 28)
  assert int(out["valid"].sum()) > 4  # score threshold 0: true and false detections
  # Evaluated in two batches of one image, with a padding example in the second.
  state = task.eval_init((H, W))
  for sl, pad in ((slice(0, 1), False), (slice(1, 2), True)):
    b = {k: v[sl] for k, v in batch.items()}
    o = {k: v[sl] for k, v in out.items()}
    if pad:
      b = {k: np.concatenate([v, v]) for k, v in b.items()}
      o = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in o.items()}
      b["valid"] = np.array([True, False])
    state = task.eval_update(state, jax.device_get(task.eval_examples(o, b)))
  summary = task.summarize({"num_images": 2.0}, state)
  ref = _reference(task, batch, out)
  for ours, t in (("mask", "segm"), ("box", "bbox")):
    for key, idx in (("ap", 0), ("ap50", 1), ("ap75", 2)):
      np.testing.assert_allclose(summary[f"{ours}_{key}"], ref[t].stats[idx], atol=1e-6,
                                 err_msg=f"{ours}_{key}")
  assert summary["mask_ap50"] > 0.5  # the fit is real: the instances are found


def test_bad_inputs_name_the_problem():
  task = create("instance_segmentation", K, max_boxes=3)
  batch = _batch()
  task.check_values(batch)
  bad = {**batch, "box_instance": batch["box_instance"].copy()}
  bad["box_instance"][1, 0] = 255
  with pytest.raises(ValueError, match=r"batch\['box_instance'\]\[1, 0\] = 255; expected mask "
                                       r"ids in \[0, 254\]"):
    task.check_values(bad)
  bad = {**batch, "instances": batch["instances"].copy()}
  bad["instances"][0, 3, 4] = -1
  with pytest.raises(ValueError, match=r"batch\['instances'\]\[0, 3, 4\] = -1"):
    task.check_values(bad)
  with pytest.raises(ValueError, match=r"batch\['instances'\] has shape \(2, 32, 64\)"):
    task.validate({**batch, "instances": batch["instances"][:, :32]}, 3)
  with pytest.raises(ValueError, match="needs targets"):
    jax.eval_shape(lambda x: MODEL.init({"params": jax.random.key(0)}, x, train=True),
                   jnp.zeros((1, H, W, 3)))
  with pytest.raises(ValueError, match="rpn_fg_iou"):
    create("instance_segmentation", K, rpn_fg_iou=0.2, rpn_bg_iou=0.3)

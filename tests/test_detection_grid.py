"""Anchor-free grid detection (YOLO-style): layout, target assignment, loss,
post-processing, and training through DetectionTask.

References: hand-checked cases, a NumPy transcription of the assignment rules
written from the module docstring with plain loops, torchvision's
`sigmoid_focal_loss` / `generalized_box_iou_loss` / `batched_nms` for the loss
and post-processing.
"""
import jax
import numpy as np
import pytest
from spine_fixtures import tiny_config

from visionjax import tasks
from visionjax.detection import grid
from visionjax.models.yolo import grid_layout
from visionjax.train import loop


def test_grid_layout_hand_checked():
  # 64-pixel image, levels 4×4 (stride 16) and 2×2 (stride 32), factor 2:
  # level 0 takes sizes (0, 2·16] px = (0, 2] strides; level 1 (2·16, ∞) px
  # = (1, ∞) strides of 32, ∞ being 2 + 1 (no box in a 64-pixel image is
  # more than 2 strides of 32 px from a cell).
  points, strides, ranges = grid_layout([(4, 4), (2, 2)], (64, 64), 2.0)
  assert points.shape == strides.shape == ranges.shape == (20, 2)
  np.testing.assert_allclose(points[:5], [[0.125, 0.125], [0.375, 0.125], [0.625, 0.125],
                                          [0.875, 0.125], [0.125, 0.375]])
  np.testing.assert_allclose(points[16:], [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75],
                                           [0.75, 0.75]])
  np.testing.assert_allclose(strides[:16], 0.25)
  np.testing.assert_allclose(strides[16:], 0.5)
  np.testing.assert_allclose(ranges[:16], [[0.0, 2.0]] * 16)
  np.testing.assert_allclose(ranges[16:], [[1.0, 3.0]] * 4)
  # Non-square: x and y strides differ.
  _, s, _ = grid_layout([(2, 4)], (32, 64), 8.0)
  np.testing.assert_allclose(s, [[0.25, 0.5]] * 8)


def _one_level(n):
  return grid_layout([(n, n)], (8 * n, 8 * n), 8.0)


def test_grid_targets_hand_checked():
  """4×4 grid (cell centres 0.125 .. 0.875, stride 0.25), radius 1.5.

  A (0, 0, .5, .5): centre region = the box; cells 0, 1, 4, 5 inside.
  D (0, 0, 1, 1): centre region (.125, .875) open: cells 5, 6, 9, 10.
  B (.52, .52, .6, .6): no cell centre inside; its centre cell is 10.
  Cell 5 goes to A (smaller than D), cell 10 to B (smaller than D).
  The padding box covers everything and must take nothing.
  """
  points, strides, ranges = _one_level(4)
  boxes = np.array([[0, 0, .5, .5], [0, 0, 1, 1], [.52, .52, .6, .6], [0, 0, 1, 1]], np.float32)
  labels = np.array([3, 7, 1, 9], np.int32)
  valid = np.array([True, True, True, False])
  t = jax.jit(grid.grid_targets)(boxes, labels, valid, points, strides, ranges)
  expected = np.full(16, -1)
  expected[[0, 1, 4, 5]] = 0
  expected[[6, 9]] = 1
  expected[10] = 2
  np.testing.assert_array_equal(t.index, expected)
  np.testing.assert_array_equal(t.positive, expected >= 0)
  np.testing.assert_array_equal(t.labels, np.where(expected >= 0, labels[expected], -1))
  np.testing.assert_allclose(t.boxes[10], boxes[2])
  np.testing.assert_allclose(t.boxes[3], 0.0)
  # Without centre sampling D covers every cell that A and B do not take.
  t = grid.grid_targets(boxes, labels, valid, points, strides, ranges, center_radius=None)
  expected = np.ones(16, int)
  expected[[0, 1, 4, 5]] = 0
  expected[10] = 2
  np.testing.assert_array_equal(t.index, expected)


def _np_targets(boxes, labels, valid, points, strides, ranges, radius):
  """The module docstring's rules, one (point, box) pair at a time."""
  p, g = len(points), len(boxes)
  cand = np.zeros((p, g), bool)
  for j in range(g):
    if not valid[j]:
      continue
    x1, y1, x2, y2 = boxes[j].astype(np.float64)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    best, best_d = None, np.inf
    for i in range(p):
      (px, py), (sx, sy), (lo, hi) = points[i], strides[i], ranges[i]
      size = max((px - x1) / sx, (py - y1) / sy, (x2 - px) / sx, (y2 - py) / sy)
      in_region = (max(x1, cx - radius * sx) < px < min(x2, cx + radius * sx) and
                   max(y1, cy - radius * sy) < py < min(y2, cy + radius * sy))
      if in_region and lo < size <= hi:
        cand[i, j] = True
      size_c = max((x2 - x1) / (2 * sx), (y2 - y1) / (2 * sy))
      d = ((px - cx) / sx) ** 2 + ((py - cy) / sy) ** 2
      if lo < size_c <= hi and d < best_d:
        best, best_d = i, d
    if best is not None:
      cand[best, j] = True
  index = np.full(p, -1)
  for i in range(p):
    areas = [(boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) if cand[i, j] else np.inf
             for j in range(g)]
    if cand[i].any():
      index[i] = int(np.argmin(areas))
  return index


def test_grid_targets_match_numpy_transcription_on_two_levels():
  rng = np.random.default_rng(0)
  # 64×64 image, strides 8 and 16, factor 2: level 0 takes sizes ≤ 16 px.
  points, strides, ranges = grid_layout([(8, 8), (4, 4)], (64, 64), 2.0)
  for trial in range(4):
    g = 5
    wh = rng.uniform(0.08, 0.6, (g, 2))
    xy = rng.uniform(0, 1 - wh)
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    labels = rng.integers(0, 10, g).astype(np.int32)
    valid = rng.random(g) < 0.8
    t = grid.grid_targets(boxes, labels, valid, points, strides, ranges, center_radius=1.5)
    ref = _np_targets(boxes, labels, valid, points, strides, ranges, 1.5)
    np.testing.assert_array_equal(t.index, ref, err_msg=f"trial {trial}")
    np.testing.assert_array_equal(t.positive, ref >= 0)
    np.testing.assert_array_equal(t.labels, np.where(ref >= 0, labels[ref], -1))
    assert (ref[:64] >= 0).any() and (ref[64:] >= 0).any()  # both levels in use


def _random_outputs(rng, b, p, k, layout):
  points, strides, ranges = layout
  return {"obj_logits": rng.normal(size=(b, p)).astype(np.float32),
          "cls_logits": rng.normal(size=(b, p, k)).astype(np.float32),
          "box_deltas": rng.normal(0, 0.7, (b, p, 4)).astype(np.float32),
          "points": points, "strides": strides, "size_ranges": ranges}


def _gt(rng, b, g, k):
  wh = rng.uniform(0.15, 0.6, (b, g, 2))
  xy = rng.uniform(0, 1 - wh)
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  return boxes, rng.integers(0, k, (b, g)).astype(np.int32), rng.random((b, g)) < 0.7


def test_grid_loss_matches_torchvision():
  torch = pytest.importorskip("torch")
  tvops = pytest.importorskip("torchvision.ops")
  rng = np.random.default_rng(1)
  b, g, k = 3, 3, 4
  layout = _one_level(4)
  out = _random_outputs(rng, b, 16, k, layout)
  boxes, labels, valid = _gt(rng, b, g, k)
  valid[0, 0] = True
  keep = np.array([True, False, True])                      # image 1 is padding
  total, num_pos, parts, t = jax.jit(
      lambda o: grid.grid_loss(o, boxes, labels, valid, box_weight=2.0, focal_alpha=0.25,
                               focal_gamma=2.0, where=keep))(out)
  tt = lambda x: torch.tensor(np.asarray(x), dtype=torch.float64)
  want = {"obj": 0.0, "cls": 0.0, "box": 0.0, "num_pos": 0.0}
  for i in np.flatnonzero(keep):
    pos = np.asarray(t.positive[i])
    want["obj"] += float(tvops.sigmoid_focal_loss(tt(out["obj_logits"][i]), tt(pos), alpha=0.25,
                                                  gamma=2.0, reduction="sum"))
    onehot = np.eye(k)[np.asarray(t.labels[i])[pos]]
    want["cls"] += float(torch.nn.functional.binary_cross_entropy_with_logits(
        tt(out["cls_logits"][i][pos]), tt(onehot), reduction="sum"))
    d = torch.nn.functional.softplus(tt(out["box_deltas"][i][pos]))
    px, s = tt(layout[0][pos]), tt(layout[1][pos])
    pred = torch.cat([px - d[:, :2] * s, px + d[:, 2:] * s], -1)
    target = tt(boxes[i][np.asarray(t.index[i])[pos]])
    want["box"] += float(tvops.generalized_box_iou_loss(pred, target, reduction="sum"))
    want["num_pos"] += pos.sum()
  assert want["num_pos"] > 0
  for name in want:
    np.testing.assert_allclose(float(getattr(parts, name)), want[name], rtol=2e-5, err_msg=name)
  np.testing.assert_allclose(float(total), want["obj"] + want["cls"] + 2 * want["box"], rtol=2e-5)
  assert float(num_pos) == want["num_pos"]
  assert not np.asarray(t.positive[1]).any()                # padding image: no positives
  grads = jax.jit(jax.grad(lambda o: grid.grid_loss({**out, **o}, boxes, labels, valid)[0]))(
      {k_: out[k_] for k_ in ("obj_logits", "cls_logits", "box_deltas")})
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(grads))


def test_grid_postprocess_matches_torchvision_batched_nms():
  torch = pytest.importorskip("torch")
  tvops = pytest.importorskip("torchvision.ops")
  rng = np.random.default_rng(2)
  k, top, max_det, thr, iou = 3, 10, 12, 0.05, 0.45
  layout = _one_level(4)
  out = _random_outputs(rng, 2, 16, k, layout)
  out["box_deltas"] = rng.normal(0.5, 0.8, (2, 16, 4)).astype(np.float32)  # overlapping boxes
  det = jax.jit(lambda o: grid.grid_postprocess(o, score_threshold=thr, iou_threshold=iou,
                                                pre_nms_top_k=top, max_detections=max_det))(out)
  sig = lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))
  for i in range(2):
    d = np.log1p(np.exp(out["box_deltas"][i].astype(np.float64))) * np.tile(layout[1], 2)
    bx = np.clip(np.concatenate([layout[0] - d[:, :2], layout[0] + d[:, 2:]], -1), 0, 1)
    sc = sig(out["obj_logits"][i])[:, None] * sig(out["cls_logits"][i])
    cb, cs, cc = [], [], []
    for c in range(k):  # per class: threshold, then the top `top` by score
      idx = [j for j in np.argsort(-sc[:, c], kind="stable") if sc[j, c] >= thr][:top]
      cb += [bx[j] for j in idx]
      cs += [sc[j, c] for j in idx]
      cc += [c] * len(idx)
    keep = tvops.batched_nms(torch.tensor(np.array(cb)), torch.tensor(np.array(cs)),
                             torch.tensor(cc), iou).numpy()[:max_det]
    n = len(keep)
    assert int(det.valid[i].sum()) == n > 3
    np.testing.assert_allclose(det.scores[i][:n], np.array(cs)[keep], rtol=1e-5)
    np.testing.assert_array_equal(det.classes[i][:n], np.array(cc)[keep])
    np.testing.assert_allclose(det.boxes[i][:n], np.array(cb)[keep], atol=1e-5)


def test_detection_task_takes_grid_outputs_exactly_over_padding(tmp_path):
  rng = np.random.default_rng(3)
  k, b = 4, 3
  task = tasks.create("detection", k, max_boxes=3, loc_weight=2.0, score_threshold=0.0)
  out = _random_outputs(rng, b, 16, k, _one_level(4))
  boxes, labels, valid = _gt(rng, b, 3, k)
  valid[:, 0] = True
  batch = {"image": np.zeros((b, 32, 32, 3), np.float32), "boxes": boxes,
           "box_labels": labels, "box_valid": valid}
  # The loss is grid_loss's; a padded batch (garbage in image 2, masked by
  # `valid`) gives the sums of the real images alone.
  sums = jax.jit(lambda o, bt: (task.loss(o, bt), task.eval_sums(o, bt), task.train_sums(o, bt),
                                grid.grid_loss(o, bt["boxes"], bt["box_labels"], bt["box_valid"],
                                               box_weight=2.0, where=bt.get("valid"))[:2]))
  padded = {**batch, "valid": np.array([True, True, False])}
  real = {kk: v[:2] for kk, v in batch.items()}
  real_out = {kk: (v[:2] if kk in ("obj_logits", "cls_logits", "box_deltas") else v)
              for kk, v in out.items()}
  (loss, count), got_eval, got_train, ref = jax.device_get(sums(out, padded))
  np.testing.assert_allclose([loss, count], ref, rtol=1e-6)
  (loss_r, count_r), want_eval, want_train, _ = jax.device_get(sums(real_out, real))
  np.testing.assert_allclose([loss, count], [loss_r, count_r], rtol=1e-5)
  assert got_eval["count"] == count and got_train["num_images"] == 2
  for got, want in ((got_eval, want_eval), (got_train, want_train)):
    for key in want:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)
  # Evaluation: the detections are grid_postprocess's, the padded image is
  # dropped, every reported metric is there; and the picture.
  ex = jax.device_get(jax.jit(task.eval_examples)(out, padded))
  det = jax.device_get(grid.grid_postprocess(out, score_threshold=0.0, iou_threshold=0.45,
                                             pre_nms_top_k=400, max_detections=200))
  np.testing.assert_allclose(ex["dt_boxes"], det.boxes, atol=1e-6)
  np.testing.assert_array_equal(ex["dt_classes"], det.classes)
  summary = task.summarize(got_eval, task.eval_update(task.eval_init((32, 32)), ex))
  assert summary["num_images"] == 2 and set(task.metrics) <= set(summary)
  task.visualize(np.full((2, 32, 32, 3), 0.5, np.float32), batch, jax.tree.map(
      lambda x: x[:2], det), [f"c{i}" for i in range(k)], str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").stat().st_size > 0
  with pytest.raises(ValueError, match="model predicts 5 classes; the task has num_classes=4"):
    task.loss({**out, "cls_logits": np.zeros((b, 16, 5), np.float32)}, batch)
  with pytest.raises(ValueError, match="YOLO-style grid model"):
    task.loss({"obj_logits": out["obj_logits"]}, batch)
  with pytest.raises(ValueError, match="center_radius=0"):
    tasks.create("detection", k, center_radius=0)


def test_grid_targets_reject_bad_shapes():
  points, strides, ranges = _one_level(2)
  with pytest.raises(ValueError, match=r"gt_labels/gt_valid have shapes \(3,\)/\(2,\)"):
    grid.grid_targets(np.zeros((2, 4)), np.zeros(3, np.int32), np.zeros(2, bool), points,
                      strides, ranges)
  with pytest.raises(ValueError, match=r"strides has shape \(3, 2\); expected \(4, 2\)"):
    grid.grid_targets(np.zeros((2, 4)), np.zeros(2, np.int32), np.zeros(2, bool), points,
                      strides[:3], ranges)


@pytest.mark.slow  # ~40 s of CPU; the task test above covers the task's side of the loop
def test_yolo_trains_and_evaluates_on_tiny_scenes(tiny_data_dir, tmp_path):
  c = tiny_config(tiny_data_dir, task="detection", num_train_steps=3)
  c.model.name = "yolo_lite"
  c.model.encoder_kwargs = {"stage_sizes": (1, 1, 1), "widths": (8, 8, 16), "stem_width": 8}
  c.model.neck_width = 8
  c.model.head_width = 8
  c.task_kwargs.max_boxes = 3
  c.task_kwargs.pre_nms_top_k = 20
  c.task_kwargs.max_detections = 20
  metrics = loop.train_and_evaluate(c, str(tmp_path / "yolo"))
  assert metrics["num_images"] == 32
  for key in ("map50_voc07", "map50", "coco_ap", "coco_ap50", "loss", "loc_loss", "conf_loss"):
    assert np.isfinite(metrics[key]), key
  assert 0.0 <= metrics["map50"] <= 1.0
  assert len(metrics["ap50_per_class"]) == 10

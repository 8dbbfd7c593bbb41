"""visionjax.viz: array drawing against hand-computed pixels, figures that leave
the matplotlib backend alone, and PNG writers of the expected size."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from visionjax import viz
from visionjax.viz import boxes as box_viz
from visionjax.viz import curves, grid, predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# VOC palette colours 0..4, written out rather than computed by viz.palette.
BLACK, MAROON, GREEN, OLIVE, NAVY = (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)


def _art(rows: list[str]) -> np.ndarray:
  """'#' marks painted pixels: a bool [H, W] mask from lines of text."""
  return np.array([[ch == "#" for ch in r] for r in rows])


# ---------------------------------------------------------------- the backend

_BACKEND_SCRIPT = r"""
import io, json, sys
import matplotlib
before = matplotlib.get_backend()
import numpy as np
import visionjax.viz
import visionjax.viz.predictions as P, visionjax.viz.boxes as B, visionjax.viz.curves as C
import visionjax.viz.grid as G
rng = np.random.default_rng(0)
im = rng.random((2, 8, 8, 3))
names = ["a", "b", "c"]
figs = [
    P.segmentation_figure(im, rng.integers(0, 3, (2, 8, 8)), rng.random((2, 8, 8, 3)), names),
    P.classification_figure(im, [0, 2], rng.random((2, 3)), names),
    B.detections_figure(im, np.tile([[0.1, 0.1, 0.6, 0.7]], (2, 3, 1)), np.full((2, 3), 0.9),
                        np.zeros((2, 3), int), np.ones((2, 3), bool), names,
                        gt_boxes=np.tile([[0.2, 0.2, 0.5, 0.5]], (2, 1, 1))),
    B.localization_figure(im, [0, 1], np.full((2, 4), 0.5), rng.random((2, 3)),
                          np.full((2, 4), 0.4), names),
    C.learning_curves_figure([{"split": "train", "step": 1, "loss": 1.0},
                              {"split": "eval", "step": 1, "accuracy": 0.5}]),
    G.image_grid(list(im), ["a", "b"]),
]
for f in figs:
  f.savefig(io.BytesIO(), format="png")
visionjax.viz.draw_boxes(im[0], [[0, 0, 1, 1]], labels=[1], class_names=names)
print(json.dumps({"before": before, "after": matplotlib.get_backend(),
                  "pyplot": "matplotlib.pyplot" in sys.modules}))
"""


def test_figures_leave_the_matplotlib_backend_alone():
  # svg, not the headless default agg: the old `matplotlib.use("Agg")` at
  # import would show here as a changed backend.
  env = dict(os.environ, MPLBACKEND="svg")
  r = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["before"] == "svg"
  assert out["after"] == out["before"]
  assert not out["pyplot"]


def test_importing_viz_does_not_import_matplotlib():
  code = "import sys, visionjax.viz; print('matplotlib' in sys.modules)"
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     timeout=60)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == "False"


# ------------------------------------------------------------- array drawing

def test_palette_is_the_voc_palette_and_colorize_whitens_ignored():
  pal = np.round(viz.palette(16) * 255).astype(int)
  assert [tuple(c) for c in pal[:5]] == [BLACK, MAROON, GREEN, OLIVE, NAVY]
  assert tuple(pal[15]) == (192, 128, 128)  # VOC 'person'
  rgb = viz.colorize(np.array([[0, 1], [255, 7]]), 3)
  np.testing.assert_array_equal(rgb * 255, [[BLACK, MAROON], [(255,) * 3, GREEN]])  # 7 -> 2


def test_to_uint8():
  x = np.array([[0.0, 1.0, 0.2, 1.5, -0.1]])
  np.testing.assert_array_equal(viz.to_uint8(x)[..., 0], [[0, 255, 51, 255, 0]])
  grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
  out = viz.to_uint8(grey)
  assert out.shape == (2, 3, 3) and (out == grey[..., None]).all()
  img = np.zeros((2, 2, 3), np.uint8)
  viz.to_uint8(img)[0, 0] = 9
  assert img[0, 0, 0] == 0  # a copy, never the caller's array
  with pytest.raises(TypeError):
    viz.to_uint8(np.zeros((2, 2, 3), np.int32))


def test_draw_masks_is_the_hand_computed_alpha_blend():
  image = np.full((4, 4, 3), 100, np.uint8)
  image[0, 0] = (0, 40, 200)
  mask = np.array([[0, 1, 2, 255],
                   [1, 1, 2, 255],
                   [0, 0, 2, 2],
                   [1, 0, 0, 0]])
  out = viz.draw_masks(image, mask, num_classes=3, alpha=0.25)
  # 0.75 * image + 0.25 * colour, rounded half up.
  b = (75, 75, 75)         # class 0, black
  m = (107, 75, 75)        # class 1, (128, 0, 0): 75 + 32
  g = (75, 107, 75)        # class 2, (0, 128, 0)
  w = (139, 139, 139)      # ignored, white: 75 + 63.75
  expected = np.array([[(0, 30, 150), m, g, w],
                       [m, m, g, w],
                       [b, b, g, g],
                       [m, b, b, b]], np.uint8)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, expected)
  # A float image in [0, 1] is the same picture.
  np.testing.assert_array_equal(viz.draw_masks(image / 255.0, mask, 3, alpha=0.25), expected)
  # alpha 1: the colour mask alone; own colours replace the palette.
  np.testing.assert_array_equal(viz.draw_masks(image, mask, 3, alpha=1.0)[2, 0], BLACK)
  own = viz.draw_masks(image, mask, 3, alpha=0.5, colors=["white", (0, 0, 0), (1.0, 0.0, 0.0)])
  np.testing.assert_array_equal(own[2, 0], (178, 178, 178))  # (100 + 255) / 2 = 177.5
  np.testing.assert_array_equal(own[1, 0], (50, 50, 50))
  np.testing.assert_array_equal(own[0, 2], (178, 50, 50))


def test_overlay_blends_only_where_asked():
  a = np.zeros((2, 2, 3), np.uint8)
  top = np.full((2, 2, 3), 200, np.uint8)
  where = np.array([[True, False], [False, True]])
  out = viz.overlay(a, top, alpha=0.3, where=where)
  np.testing.assert_array_equal(out[..., 0], [[60, 0], [0, 60]])
  with pytest.raises(ValueError):
    viz.overlay(a, top, alpha=1.5)


BOX_1PX = _art(["..........",
                "..#####...",
                "..#...#...",
                "..#...#...",
                "..#...#...",
                "..#####...",
                "..........",
                ".........."])
BOX_2PX = _art(["..........",
                "..#####...",
                "..#####...",
                "..##.##...",
                "..#####...",
                "..#####...",
                "..........",
                ".........."])


@pytest.mark.parametrize("width,expected", [(1, BOX_1PX), (2, BOX_2PX)])
def test_draw_boxes_paints_exactly_the_border(width, expected):
  image = np.full((8, 10, 3), 7, np.uint8)
  # Pixel box x 2..7, y 1..6: columns 2..6 and rows 1..5 lie inside it.
  out = viz.draw_boxes(image, [[2, 1, 7, 6]], colors=(255, 0, 0), width=width, normalized=False)
  painted = (out != 7).any(-1)
  np.testing.assert_array_equal(painted, expected)
  assert (out[painted] == (255, 0, 0)).all()
  assert (image == 7).all()  # the input is untouched
  # The same box normalized (the default) draws the same pixels.
  norm = viz.draw_boxes(image, np.array([[0.2, 0.125, 0.7, 0.75]]), colors="red", width=width)
  np.testing.assert_array_equal(norm, out)


def test_draw_boxes_clips_to_the_image_and_colours_by_class():
  image = np.zeros((6, 6, 3), np.uint8)
  # Hanging off the top-left corner: only its bottom and right edges show.
  out = viz.draw_boxes(image, [[-3, -3, 4, 4], [7, 7, 9, 9]], labels=[3, 0], width=1,
                       normalized=False, tags=False)
  np.testing.assert_array_equal((out != 0).any(-1), _art(["...#..",
                                                           "...#..",
                                                           "...#..",
                                                           "####..",
                                                           "......",
                                                           "......"]))
  np.testing.assert_array_equal(out[3, 0], NAVY)  # class 3 -> palette colour 4
  # With its tag, the box wholly outside still leaves no trace.
  tagged = viz.draw_boxes(image, [[7, 7, 9, 9]], labels=[0], scores=[1.0], normalized=False)
  assert (tagged == 0).all()


def test_draw_boxes_tags_sit_above_the_box():
  image = np.full((60, 80, 3), 0.5)
  box = [[10, 30, 70, 55]]
  plain = viz.draw_boxes(image, box, labels=[1], width=1, normalized=False, tags=False)
  tagged = viz.draw_boxes(image, box, labels=[1], scores=[0.9], class_names=["bg", "cat"],
                          width=1, normalized=False)
  changed = (plain != tagged).any(-1)
  rows, cols = np.nonzero(changed)
  assert changed.any()
  assert rows.max() < 30 and cols.min() >= 10  # above the top edge, from its left end
  assert (tagged[30, 10:70] == GREEN).all()    # the border itself is intact
  # A box at the very top gets its tag inside instead.
  top = viz.draw_boxes(image, [[10, 0, 70, 55]], labels=[1], class_names=["bg", "cat"],
                       normalized=False)
  assert (top != viz.draw_boxes(image, [[10, 0, 70, 55]], labels=[1], normalized=False,
                                tags=False)).any(-1)[1:20, 10:70].any()


def test_triptych_is_image_ground_truth_prediction():
  image = np.full((3, 4, 3), 60, np.uint8)
  gt = np.array([[0, 1, 1, 255]] * 3)
  pred = np.ones((3, 4), int)
  out = viz.triptych(image, gt, pred, 2, alpha=0.5, gap=2)
  assert out.shape == (3, 3 * 4 + 2 * 2, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[:, :4], image)
  assert (out[:, 4:6] == 255).all() and (out[:, 10:12] == 255).all()
  np.testing.assert_array_equal(out[0, 6:10], [BLACK, MAROON, MAROON, (255, 255, 255)])
  np.testing.assert_array_equal(out[0, 12], (94, 30, 30))  # (60 + 128) / 2, 60 / 2


# ------------------------------------------------------------------- figures

def _pixels(fig) -> np.ndarray:
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba()).copy()


def test_localization_boxes_are_xyxy_or_cxcywh_alike():
  rng = np.random.default_rng(1)
  im, logits = rng.random((1, 16, 16, 3)), rng.random((1, 3))
  xyxy_true, xyxy_pred = np.array([[0.1, 0.2, 0.5, 0.8]]), np.array([[0.3, 0.3, 0.9, 0.7]])
  cxcywh_true, cxcywh_pred = np.array([[0.3, 0.5, 0.4, 0.6]]), np.array([[0.6, 0.5, 0.6, 0.4]])
  a = box_viz.localization_figure(im, [0], xyxy_true, logits, xyxy_pred, "abc")
  b = box_viz.localization_figure(im, [0], cxcywh_true, logits, cxcywh_pred, "abc",
                                  box_format="cxcywh")
  np.testing.assert_array_equal(_pixels(a), _pixels(b))
  with pytest.raises(ValueError, match="box_format"):
    box_viz.localization_figure(im, [0], xyxy_true, logits, xyxy_pred, "abc", box_format="yxyx")


def test_image_grid_shows_each_image_in_rows_of_cols():
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (8, 16, 3), dtype=np.uint8) for _ in range(5)]
  fig = grid.image_grid(images, [f"t{i}" for i in range(5)], cols=3, panel_width=2.0)
  shown = [ax for ax in fig.axes if ax.images]
  assert len(fig.axes) == 6 and len(shown) == 5  # 2 rows of 3, the last panel empty
  assert [ax.get_title() for ax in shown] == ["t0", "t1", "t2", "t3", "t4"]
  for ax, im in zip(shown, images):
    np.testing.assert_array_equal(ax.images[0].get_array(), im)
  # Panels keep the images' aspect (8 x 16: 1.0 in high) plus 0.3 in for titles.
  np.testing.assert_allclose(fig.get_size_inches(), (6.0, 2 * 1.3))
  assert grid.image_grid(images[:2]).get_size_inches()[1] == pytest.approx(0.8)
  with pytest.raises(ValueError, match="2 titles for 5 images"):
    grid.image_grid(images, ["a", "b"])


# ------------------------------------------------------------------- writers

def _size(path) -> tuple[int, int]:
  with Image.open(path) as im:
    im.load()  # a truncated file fails here
    return im.size


def test_save_functions_write_pngs_of_the_expected_size(tmp_path):
  rng = np.random.default_rng(0)
  names = ["bg", "a", "b"]
  im = rng.random((2, 8, 8, 3))

  p = tmp_path / "new" / "dir" / "seg.png"  # missing folders are made
  predictions.save_segmentation(im, rng.integers(0, 3, (2, 8, 8)), rng.random((2, 8, 8, 3)),
                                names, str(p))
  assert _size(p) == (750, 580)            # 7.5 x (2.5 * 2 + 0.8) in at 100 dpi

  p = tmp_path / "cls.png"
  predictions.save_classification(rng.random((10, 8, 8, 3)), rng.integers(0, 3, 10),
                                  rng.random((10, 3)), names, str(p))
  assert _size(p) == (1280, 380)           # 8 a row: 2 rows of 1.6 x 1.9 in

  p = tmp_path / "det.png"
  box_viz.save_detections(im, np.tile([[0.1, 0.2, 0.6, 0.9]], (2, 4, 1)), np.full((2, 4), 0.8),
                          np.zeros((2, 4), int), np.ones((2, 4), bool), names, str(p),
                          gt_boxes=np.tile([[0.0, 0.0, 0.5, 0.5]], (2, 2, 1)),
                          gt_valid=np.ones((2, 2), bool), per_image_dir=str(tmp_path / "dets"))
  assert _size(p) == (600, 300)
  assert sorted(os.listdir(tmp_path / "dets")) == ["000.png", "001.png"]
  assert _size(tmp_path / "dets" / "000.png") == (400, 400)

  p = tmp_path / "loc.png"
  box_viz.save_localization(im, np.array([0, 1]), np.full((2, 4), 0.5), rng.random((2, 3)),
                            np.full((2, 4), 0.4), names, str(p))
  assert _size(p) == (600, 320)

  p = tmp_path / "curves.png"
  records = [{"split": "train", "step": s, "loss": 1.0 / s, "accuracy": 0.1 * s}
             for s in (1, 2, 3)] + [{"split": "eval", "step": 3, "mean_iou": 0.4,
                                     "num_examples": 32}]
  curves.plot_learning_curves(records, str(p))
  assert _size(p) == (1350, 320)           # loss, accuracy, mean_iou: 3 x 4.5 x 3.2 in
  curves.plot_learning_curves([{"split": "train", "step": 1}], str(tmp_path / "none.png"))
  assert not (tmp_path / "none.png").exists()  # nothing to plot, nothing written


def test_draw_masks_background_keeps_the_image_and_blends_the_rest():
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
  mask = rng.integers(0, 3, (6, 5))
  got = viz.draw_masks(image, mask, 3, alpha=0.5, background=0)
  np.testing.assert_array_equal(got[mask == 0], image[mask == 0])
  blended = viz.draw_masks(image, mask, 3, alpha=0.5)  # the plain blend elsewhere
  np.testing.assert_array_equal(got[mask != 0], blended[mask != 0])
  assert (mask == 0).any() and (mask != 0).any()


def test_detection_overlay_draws_only_scores_from_draw_min_score():
  """`DetectionTask.draw_result` equals drawing the kept boxes alone."""
  from visionjax import tasks
  names = ["a", "b"]
  result = {"boxes": np.asarray([[2, 2, 20, 20], [30, 5, 60, 30], [5, 25, 25, 45]], np.float32),
            "classes": np.asarray([0, 1, 1], np.int32),
            "scores": np.asarray([0.9, 0.3, 0.5], np.float32)}
  blank = np.zeros((50, 64, 3), np.uint8)
  got = tasks.create("detection", 2).draw_result(blank, result, names)   # draw_min_score 0.5
  keep = np.asarray([0, 2])
  want = viz.draw_boxes(blank, result["boxes"][keep], result["classes"][keep],
                        result["scores"][keep], names, normalized=False)
  np.testing.assert_array_equal(got, want)
  assert not got[15:30, 57:60].any()  # the 0.3 box's right border is not drawn
  low = tasks.create("detection", 2, draw_min_score=0.2).draw_result(blank, result, names)
  assert low[15:30, 57:60].any()

"""Default boxes (counts and values from the SSD reference) and box coding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.detection import anchors, coding


def test_ssd300_and_ssd512_default_box_counts_match_the_paper():
  # SSD300: 38²·4 + 19²·6 + 10²·6 + 5²·6 + 3²·4 + 1²·4 = 8,732 (Liu et al., Table 1
  # and Fig. 2); SSD512: 24,564 (the released SSD512 prior box layer).
  assert anchors.ssd300_default_boxes().shape == (8732, 4)
  assert anchors.ssd512_default_boxes().shape == (24564, 4)
  assert anchors.num_default_boxes(anchors.SSD300_FEATURE_SIZES, anchors.ssd300_specs()) == 8732
  assert [s.boxes_per_location for s in anchors.ssd300_specs()] == [4, 6, 6, 6, 4, 4]


def test_ssd300_sizes_follow_the_reference_script():
  specs = anchors.ssd300_specs()
  np.testing.assert_allclose([s.min_size * 300 for s in specs], [30, 60, 111, 162, 213, 264])
  np.testing.assert_allclose([s.max_size * 300 for s in specs], [60, 111, 162, 213, 264, 315])
  np.testing.assert_allclose([s.step * 300 for s in specs], [8, 16, 32, 64, 100, 300])
  specs512 = anchors.ssd512_specs()
  np.testing.assert_allclose([s.min_size * 512 for s in specs512],
                             [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8])
  np.testing.assert_allclose(specs512[-1].max_size * 512, 537.6)


def test_first_cell_of_ssd300_by_hand():
  b = anchors.ssd300_default_boxes()
  c = 0.5 * 8 / 300
  s2 = np.sqrt(30 * 60) / 300
  r = np.sqrt(2.0)
  expected = [[c, c, 0.1, 0.1], [c, c, s2, s2], [c, c, 0.1 * r, 0.1 / r], [c, c, 0.1 / r, 0.1 * r]]
  np.testing.assert_allclose(b[:4], expected, rtol=1e-6)
  # Next cell is one step to the right (row-major, x fastest).
  np.testing.assert_allclose(b[4, :2], [3 * c, c], rtol=1e-6)
  # The last map (1×1) is centred, 264 px and sqrt(264·315) px squares first.
  np.testing.assert_allclose(b[-4], [0.5, 0.5, 264 / 300, 264 / 300], rtol=1e-6)
  s = np.sqrt(264 * 315) / 300
  np.testing.assert_allclose(b[-3], [0.5, 0.5, s, s], rtol=1e-6)


def test_paper_scales_and_any_feature_maps():
  specs = anchors.paper_specs(6)
  np.testing.assert_allclose([s.min_size for s in specs], [0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
  np.testing.assert_allclose(specs[-1].max_size, 1.04)
  # Non-square maps: f_h × f_w cells, centres (j + .5)/f_w, (i + .5)/f_h.
  spec = anchors.AnchorSpec(0.3, None, ())
  b = anchors.default_boxes([(2, 3)], [spec])
  assert b.shape == (6, 4)
  np.testing.assert_allclose(b[:, 0], [1 / 6, 3 / 6, 5 / 6] * 2, rtol=1e-6)
  np.testing.assert_allclose(b[:, 1], [0.25] * 3 + [0.75] * 3, rtol=1e-6)
  clipped = anchors.default_boxes([1], [anchors.AnchorSpec(1.5, None, ())], clip=True)
  np.testing.assert_allclose(clipped, [[0.5, 0.5, 1.0, 1.0]])


def test_bad_specs_raise_naming_the_value():
  with pytest.raises(ValueError, match="aspect_ratios has \\[1.0\\]"):
    anchors.AnchorSpec(0.2, 0.3, (1.0,))
  with pytest.raises(ValueError, match="2 feature maps but 1 anchor specs"):
    anchors.default_boxes([4, 2], [anchors.AnchorSpec(0.2)])


def test_encode_by_hand():
  anchor = jnp.array([0.5, 0.5, 0.2, 0.2])
  gt = jnp.array([0.52, 0.46, 0.3, 0.1])  # cx, cy, w, h
  t = coding.encode(gt, anchor, fmt="cxcywh")
  np.testing.assert_allclose(t, [1.0, -2.0, np.log(1.5) / 0.2, np.log(0.5) / 0.2], rtol=1e-5)


def test_encode_decode_round_trip_jit_vmap():
  rng = np.random.default_rng(0)
  anchors_ = anchors.ssd300_default_boxes()[::97]
  xy = rng.uniform(0, 0.7, (len(anchors_), 2))
  boxes = np.concatenate([xy, xy + rng.uniform(0.02, 0.3, xy.shape)], -1).astype(np.float32)
  enc = jax.jit(jax.vmap(lambda b, a: coding.encode(b, a)))(boxes, anchors_)
  dec = jax.jit(lambda t, a: coding.decode(t, a))(enc, anchors_)
  np.testing.assert_allclose(dec, boxes, atol=2e-6)
  # Variances only rescale the targets.
  enc1 = coding.encode(boxes, anchors_, (1.0, 1.0, 1.0, 1.0))
  np.testing.assert_allclose(enc * np.array([0.1, 0.1, 0.2, 0.2]), enc1, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="variances has shape \\(3,\\)"):
    coding.encode(boxes, anchors_, (0.1, 0.1, 0.2))

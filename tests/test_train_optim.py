"""Optimizers, schedules and checkpoint retention against independent formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visionjax.train import checkpoint as ckpt_lib
from visionjax.train import optim
from visionjax.train.config import base_config


def _oc(**kw):
  oc = base_config().optimizer
  for k, v in kw.items():
    oc[k] = v
  return oc


def test_warmup_cosine_schedule_formula():
  s = optim.make_schedule(_oc(learning_rate=0.4, schedule="warmup_cosine", warmup_steps=10,
                              end_lr_factor=0.1), total_steps=110)
  assert float(s(0)) == 0.0
  assert math.isclose(float(s(5)), 0.2, rel_tol=1e-6)
  assert math.isclose(float(s(10)), 0.4, rel_tol=1e-6)
  # Halfway through the cosine part: end + (peak - end) * (1 + cos(pi/2)) / 2.
  assert math.isclose(float(s(60)), 0.04 + 0.36 * 0.5, rel_tol=1e-5)
  assert math.isclose(float(s(110)), 0.04, rel_tol=1e-5)


def test_piecewise_and_one_cycle():
  s = optim.make_schedule(_oc(learning_rate=1.0, schedule="piecewise", boundaries=(0.5, 0.75),
                              decay_factor=0.1), total_steps=100)
  assert [float(s(t)) for t in (0, 49, 50, 74, 75, 99)] == pytest.approx(
      [1, 1, 0.1, 0.1, 0.01, 0.01])
  s = optim.make_schedule(_oc(learning_rate=1.0, schedule="one_cycle", pct_start=0.3),
                          total_steps=100)
  assert float(s(30)) == pytest.approx(1.0, rel=1e-5)
  assert float(s(0)) < 0.1 and float(s(100)) < 1e-3


def test_adamw_decays_kernels_but_not_biases_or_scales():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones((4,))},
            "norm": {"scale": jnp.ones((4,))}}
  grads = jax.tree.map(jnp.zeros_like, params)  # zero grads: only decay moves params
  tx, _ = optim.make_optimizer(_oc(name="adamw", learning_rate=0.1, schedule="constant",
                                   weight_decay=0.5), total_steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["conv"]["kernel"], -0.1 * 0.5 * np.ones((3, 3, 2, 4)),
                             rtol=1e-6)
  np.testing.assert_array_equal(updates["conv"]["bias"], 0.0)
  np.testing.assert_array_equal(updates["norm"]["scale"], 0.0)


def test_sgd_nesterov_and_clipping_match_hand_computation():
  p = {"w": jnp.array([1.0, 2.0])}
  g = {"w": jnp.array([3.0, 4.0])}  # global norm 5
  tx, _ = optim.make_optimizer(_oc(name="sgd", learning_rate=0.1, schedule="constant",
                                   momentum=0.9, nesterov=True, weight_decay=0.0,
                                   grad_clip_norm=1.0), total_steps=10)
  u, _ = tx.update(g, tx.init(p), p)
  clipped = np.array([0.6, 0.8])
  # Nesterov, first step: velocity v = g; update = -lr * (g + momentum * v).
  np.testing.assert_allclose(u["w"], -0.1 * (clipped + 0.9 * clipped), rtol=1e-6)


def test_checkpointer_keeps_latest_k_and_the_best(tmp_path):
  ck = ckpt_lib.Checkpointer(str(tmp_path), every_steps=1, keep=2, best_metric="miou",
                             best_mode="max", async_save=False)
  state = {"w": np.arange(3.0)}
  for step, miou in [(1, 0.5), (2, 0.9), (3, 0.6), (4, None), (5, 0.7)]:
    ck.save(step, {"w": state["w"] + step},
            metrics=None if miou is None else {"miou": miou})
  ck.wait()
  assert sorted(ck.all_steps()) == [2, 4, 5]  # best (0.9) + latest two
  restored = ck.restore(2, {"w": jax.ShapeDtypeStruct((3,), np.float64)})
  np.testing.assert_array_equal(restored["w"], np.arange(3.0) + 2)
  ck.close()

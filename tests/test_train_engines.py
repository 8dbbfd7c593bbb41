"""Data-parallel engines: jit (mesh) vs pmap vs one device, and compilation."""
import jax
import jax.numpy as jnp
from jax_versions import enable_x64
import numpy as np
import pytest
import spine_fixtures
from spine_fixtures import tiny_config

from visionjax.train import loop


def _batches(config, n):
  it = spine_fixtures.train_dataset(config).as_numpy_iterator()
  return [next(it) for _ in range(n)]


def _train(config, batches, devices=None):
  exp = loop.build(config, devices=devices)
  state = exp.create_state()
  if config.model.get("dtype") == jnp.float64:
    # Flax creates BatchNorm statistics in float32 whatever the dtype; the
    # first float64 step returns them in float64, which would compile the
    # step a second time.
    state = jax.tree.map(lambda x: x.astype(jnp.float64) if x.dtype == jnp.float32 else x,
                         state)
  initial = jax.device_get(exp.engine.to_checkpoint(state))  # before donation
  losses = []
  for b in batches:
    state, m = exp.train_step(state, exp.engine.put_batch(b))
    losses.append(float(exp.engine.fetch(m)["loss"]))
  return jax.device_get(exp.engine.to_checkpoint(state)), losses, exp, initial


def _rel_err(a, b):
  return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / max(np.linalg.norm(np.ravel(b)), 1e-12))


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_one_device_jit_and_pmap_agree(tiny_data_dir, task):
  """Same global batches -> same parameters, whatever the engine/devices.

  Run in float64 so the comparison is exact up to rounding (1e-15): in float32
  the different reduction order over 8 devices is amplified by BatchNorm's
  backward pass to ~1e-3 of the update after 3 steps, which would hide a real
  bug of that size. unet_small has BatchNorm, so cross-device statistics are
  checked too; SmallCNN has none.
  """
  with enable_x64(True):
    config = tiny_config(tiny_data_dir, task=task, **{
        "optimizer.name": "sgd", "optimizer.learning_rate": 0.05,
        "optimizer.weight_decay": 0.0})
    config.model.dtype = jnp.float64
    config.model.param_dtype = jnp.float64
    batches = [{k: v.astype(np.float64) if v.dtype == np.float32 else v
                for k, v in b.items()} for b in _batches(config, 3)]
    ref, ref_losses, _, init = _train(config, batches, devices=jax.devices()[:1])
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    ref_update = flat(ref.params) - flat(init.params)
    assert flat(ref.params).dtype == np.float64
    assert np.abs(ref_update).max() > 1e-4  # training did move the weights
    for engine in ("jit", "pmap"):
      config.engine = engine
      got, losses, exp, _ = _train(config, batches)
      assert exp.engine.num_devices == 8
      assert int(got.step) == 3
      np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
      assert _rel_err(flat(got.params) - flat(init.params), ref_update) < 1e-10, engine
      if ref.batch_stats:
        np.testing.assert_allclose(flat(got.batch_stats), flat(ref.batch_stats),
                                   rtol=1e-10, atol=1e-14, err_msg=engine)


def test_state_is_born_replicated_on_the_mesh(tiny_data_dir):
  exp = loop.build(tiny_config(tiny_data_dir))
  state = exp.create_state()
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
    assert len(leaf.sharding.device_set) == 8
  batch = exp.engine.put_batch(_batches(exp.config, 1)[0])
  assert batch["image"].sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(batch["image"].addressable_shards) == 8
  assert batch["image"].addressable_shards[0].data.shape[0] == 16 // 8


def test_train_step_compiles_once(tiny_data_dir):
  config = tiny_config(tiny_data_dir)
  exp = loop.build(config)
  state = exp.create_state()
  for b in _batches(config, 4):
    state, _ = exp.train_step(state, exp.engine.put_batch(b))
  assert exp.train_step._cache_size() == 1
  # The donated input state was consumed, not copied.
  old = state
  state, _ = exp.train_step(state, exp.engine.put_batch(_batches(config, 1)[0]))
  assert jax.tree.leaves(old.params)[0].is_deleted()
  assert exp.train_step._cache_size() == 1


def test_bfloat16_compute_keeps_float32_params(tiny_data_dir):
  config = tiny_config(tiny_data_dir, task="segmentation", half_precision=True)
  params, losses, _, _ = _train(config, _batches(config, 2))
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(params.params))
  assert all(np.isfinite(losses))


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_compiled_steps_carry_no_check_effects(tiny_data_dir, task):
  """The value checks inside losses/box ops (`checkify.debug_check`) leave an
  error effect on the traced step; jit dispatches programs with effects
  through its slow Python path on every call. The engines compile the train
  step `unchecked`: no effects, and the same numbers as the raw step."""
  import functools

  from visionjax.train import steps
  config = tiny_config(tiny_data_dir, task=task)
  if task == "detection":  # as tests/test_tasks_detection.py: a tiny SSD
    config.model.name = "ssd_lite"
    config.model.encoder_kwargs = {"stage_sizes": (1, 1, 1), "widths": (8, 8, 16),
                                   "stem_width": 8}
    config.task_kwargs.max_boxes = 3
  exp = loop.build(config, devices=jax.devices()[:1])
  state = exp.create_state()
  batch = exp.engine.put_batch(_batches(config, 1)[0])
  raw = functools.partial(
      steps.train_step, model=exp.model, tx=exp.tx, task=exp.task, schedule=exp.schedule,
      channels=exp.channels, axis_name=None, freeze=config.freeze, freeze_until_step=0)
  assert jax.make_jaxpr(raw)(state, batch).effects  # the checks are there
  assert not exp.train_step.trace(state, batch).jaxpr.effects
  want_state, want = jax.jit(raw)(state, batch)
  got_state, got = exp.train_step(state, batch)  # donates `state`: last use
  assert float(got["loss"]) == float(want["loss"])
  for a, b in zip(jax.tree.leaves(got_state.params), jax.tree.leaves(want_state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

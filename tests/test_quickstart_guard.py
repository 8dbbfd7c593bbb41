"""Regression guard: the README's first command still learns (issue 17).

Trains the shipped `unet_scenes` recipe (model, loss, data, optimizer: the
config file unchanged but for the step count) for a short budget on the
real built-in `dense64` scenes and checks the held-out scores against floors
set from measured runs, with margin. It guards against a dependency upgrade
or a change in the package that silently stops the quickstart from learning;
the full-length targets are in the README's Results.

Floors, from 300-step runs of this test's exact config on jax 0.10.2 /
flax 0.12.8 (2026-12-03, seeds 0 / 1 / 2): mIoU 0.403 / 0.271 / 0.357,
pixel accuracy 0.919 / 0.903 / 0.909. A model that has not learned (all
background) scores mIoU ~0.087 and pixel accuracy ~0.87 here, so the floors
sit between: below the worst seed with margin, above no learning.
"""
import importlib

import pytest

from visionjax.train import loop

STEPS = 300
# Measured at 300 steps (seeds 0 / 1 / 2): see the module docstring.
FLOORS = {"miou": 0.18, "pixel_accuracy": 0.885}


@pytest.fixture(scope="module")
def dense_data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize("seed", [0])
def test_quickstart_recipe_still_learns(dense_data_dir, tmp_path, seed):
  config = importlib.import_module("visionjax.configs.unet_scenes").get_config()
  config.dataset.data_dir = dense_data_dir
  config.num_train_steps = STEPS
  config.seed = seed
  config.checkpoint.every_steps = 0
  config.num_visualizations = 0
  config.progress_bar = False
  metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
  for name, floor in FLOORS.items():
    assert metrics[name] >= floor, (name, metrics[name], floor)

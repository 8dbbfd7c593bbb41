"""Test configuration: every test run sees 8 virtual CPU devices.

XLA_FLAGS must be set before JAX initialises its backends, so this runs at
import time of the conftest, which pytest loads before any test module.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # keep TF off any GPU
# JAX's persistent compilation cache, shared by the xdist workers and every
# subprocess they start (they inherit the environment): many tests compile
# the same tiny configs' steps again (a run, then its resume in a fresh
# process, ...). A cache hit loads the same executable, so results do not
# change. Measured on tests/test_train_loop.py + test_train_faults.py
# (-n 2, cold cache): 319 s of CPU without it, 221 s with it. Kept between
# local runs, bounded to 2 GB (least recently used entries go first).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"visionjax-tests-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

# torchvision (the weight-converter parity tests, extra `convert`) must be
# imported before TensorFlow: the CUDA build of torch 2.14 loads triton when
# torchvision imports torch._dynamo, and that segfaults once TensorFlow's
# libraries are loaded (seen here: `import tensorflow, torchvision` crashes,
# `import torchvision, tensorflow` works).
try:
  import torchvision  # noqa: E402, F401
except ImportError:
  pass

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_platforms", "cpu")


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
  assert jax.device_count() == 8, (
      f"tests expect 8 virtual CPU devices, got {jax.device_count()}; "
      "was JAX imported before tests/conftest.py set XLA_FLAGS?")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared `digit_scenes/tiny` dataset."""
  import tensorflow_datasets as tfds

  from visionjax.data import builtin  # noqa: F401  registers the builder
  d = str(tmp_path_factory.mktemp("tfds"))
  tfds.builder("digit_scenes/tiny", data_dir=d).download_and_prepare()
  return d

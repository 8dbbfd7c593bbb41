"""The Colab notebooks in colab/: each runs top to bottom, and each opens with the
"Open in Colab" badge, the install cell and a parameter cell.

Each notebook runs in its own Jupyter kernel (nbclient), in a fresh folder,
with the CI values below injected after its ``parameters`` cell (papermill's
convention): a few steps on ``digit_scenes/tiny`` (32x32, 96 scenes, rendered
in about a second into the notebook's own TFDS folder, so parallel test
workers never prepare one folder together). The kernel inherits this process's
environment plus ``CI=1``, which makes the install cell a no-op: the notebooks
run against this checkout. The notebooks that show every device at work get
8 virtual CPU devices (as conftest.py gives the tests), the others one, which
compiles their training steps faster; XLA's CPU backend compiles without LLVM
optimizations (``--xla_backend_optimization_level=0``: a few steps need no
fast code; measured here: a U-Net run of 3 steps 20-32 s instead of 59-64 s,
the same metrics). An exception in any cell fails the test, naming the cell.
"""
from __future__ import annotations

import glob
import os
import re

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "colab", "*.ipynb")))
# The repository the badges open and the install cell installs from (one place).
GITHUB_REPO = "visionjax/visionjax"
TINY = "digit_scenes/tiny"

# Per notebook: the parameter values CI runs it with (DATA_DIR is added per run).
CI_PARAMETERS = {
    "01_quickstart_segmentation.ipynb": {"TRAIN_STEPS": 3, "DATASET": TINY},
    "02_losses_and_metrics.ipynb": {"NUM_BATCHES": 2},
    "03_detection_ssd.ipynb": {"TRAIN_STEPS": 3, "DATASET": TINY},
    # CIFAR-10 cannot be downloaded on CI's machine (no network): this also runs
    # the fallback to the built-in digits, as the tiny dataset.
    "04_classification_cifar10.ipynb": {"TRAIN_STEPS": 3, "FALLBACK_DATASET": TINY},
    "05_transfer_learning.ipynb": {"PRETRAIN_STEPS": 3, "FINETUNE_STEPS": 3, "FREEZE_STEPS": 1,
                                   "IMAGENET_STEPS": 2, "PRETRAIN_DATASET": TINY,
                                   "DATASET": TINY},
    "06_predict_and_export.ipynb": {"TRAIN_STEPS": 3, "DATASET": TINY},
}
MULTI_DEVICE = ("01_quickstart_segmentation.ipynb", "02_losses_and_metrics.ipynb")


def _load(name: str) -> nbformat.NotebookNode:
  return nbformat.read(os.path.join(ROOT, "colab", name), as_version=4)


def _parameters_cell(nb) -> tuple[int, nbformat.NotebookNode]:
  cells = [(i, c) for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ())]
  assert len(cells) == 1, f"expected one cell tagged 'parameters', found {len(cells)}"
  return cells[0]


def _assigned(source: str) -> set[str]:
  return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", source, re.M))


def test_every_notebook_has_ci_parameters():
  assert NOTEBOOKS, "no notebooks in colab/"
  assert sorted(CI_PARAMETERS) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_badge_install_cell_and_parameter_cell(name):
  nb = _load(name)
  nbformat.validate(nb)
  first, install = nb.cells[0], nb.cells[1]
  assert first.cell_type == "markdown"
  assert ("https://colab.research.google.com/assets/colab-badge.svg" in first.source and
          f"(https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/colab/{name})"
          in first.source), "the first cell opens with the Open in Colab badge of this notebook"
  assert install.cell_type == "code"
  for needed in (f'REPO_URL = "https://github.com/{GITHUB_REPO}"',
                 '"pip", "install"', 'f"visionjax @ git+{REPO_URL}"',
                 'importlib.util.find_spec("visionjax") is None',  # no-op where installed
                 'not os.environ.get("CI")'):                      # and under CI
    assert needed in install.source, f"install cell lacks {needed!r}"
  index, params = _parameters_cell(nb)
  assert index > 1 and params.cell_type == "code"
  names = _assigned(params.source)
  assert any(n.endswith("_STEPS") or n == "NUM_BATCHES" for n in names), names
  assert set(CI_PARAMETERS[name]) <= names, "CI overrides a name the notebook does not set"
  assert "DATA_DIR" in names or name == "02_losses_and_metrics.ipynb"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
  for i, cell in enumerate(_load(name).cells):
    if cell.cell_type == "code":
      assert not cell.outputs and cell.execution_count is None, f"cell {i} has outputs"


def test_readme_links_each_notebook():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  for name in NOTEBOOKS:
    assert f"(colab/{name})" in readme, name


def _random_resnet18(path: str) -> str | None:
  """A torchvision ResNet-18 state dict with random weights (no download), or
  None without torch (the notebook then skips its ImageNet part)."""
  try:
    import torch
    import torchvision
  except ImportError:
    return None
  torch.manual_seed(0)
  torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
  return path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
  from nbclient import NotebookClient

  nb = _load(name)
  values = {**CI_PARAMETERS[name], "DATA_DIR": str(tmp_path / "tfds")}
  if name.startswith("05_"):
    values["IMAGENET_WEIGHTS_FILE"] = _random_resnet18(str(tmp_path / "resnet18.pth"))
  index, params = _parameters_cell(nb)
  values = {k: v for k, v in values.items() if k in _assigned(params.source)}
  injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in values.items()))
  injected.metadata["tags"] = ["injected-parameters"]
  nb.cells.insert(index + 1, injected)
  monkeypatch.setenv("CI", "1")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                     f"--xla_force_host_platform_device_count={8 if name in MULTI_DEVICE else 1}")
  work = tmp_path / "work"
  work.mkdir()
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(work)}}).execute()

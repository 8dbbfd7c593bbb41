"""Figures without pyplot, and writing them as PNG to any path.

Figures are built as `matplotlib.figure.Figure` with an Agg canvas attached,
never through `matplotlib.pyplot`: pyplot would register them with (and may
switch) the process-wide backend, which breaks inline plots in notebooks.
Figures made here are plain objects; they are freed with their last reference
and show inline when returned to a notebook cell.
"""
from __future__ import annotations

from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from visionjax import paths

DPI = 100


def new_figure(width: float, height: float) -> Figure:
  """A figure of ``width`` x ``height`` inches at `DPI`, with an Agg canvas."""
  fig = Figure(figsize=(width, height), dpi=DPI)
  FigureCanvasAgg(fig)  # attaches itself: tight_layout and savefig need a renderer
  return fig


def grid(n: int, cols: int, panel_width: float, panel_height: float) -> tuple[Figure, list]:
  """A figure with ``n`` panels, ``cols`` to a row (fewer if n is smaller).

  Returns:
    (figure, its first n axes in row-major order); the unused axes of the
    last row are switched off.
  """
  cols = max(min(n, cols), 1)
  rows = max(-(-n // cols), 1)
  fig = new_figure(panel_width * cols, panel_height * rows)
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat[n:]:
    ax.axis("off")
  return fig, list(axes.flat[:n])


def write_png(fig: Figure, path: epath.PathLike) -> None:
  """Saves ``fig`` as PNG at ``path`` (local or e.g. ``gs://``; see
  `visionjax.paths`), at `DPI`.

  The parent folder is created if missing; the image is
  ``figsize * DPI`` pixels (no tight bounding box, so sizes are predictable).
  """
  p = paths.resolve(path)  # gs:// kept as is; local paths made absolute
  p.parent.mkdir(parents=True, exist_ok=True)
  with p.open("wb") as f:
    fig.savefig(f, format="png", dpi=DPI)

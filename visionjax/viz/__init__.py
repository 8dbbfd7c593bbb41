"""visionjax.viz: learning curves, segmentation overlays, prediction grids.

Array drawing (uint8 in, uint8 out; NumPy and Pillow only) is re-exported
here, so ``import visionjax.viz`` does not import matplotlib:

  draw_boxes, draw_masks, overlay, triptych, to_uint8, palette, colorize

Figures (`matplotlib.figure.Figure`, built without pyplot, so the
matplotlib backend is never changed) and their PNG writers live in
`visionjax.viz.predictions`, `visionjax.viz.boxes`, `visionjax.viz.curves`
and `visionjax.viz.grid` (plain image grids).
"""
from visionjax.viz.draw import draw_boxes, draw_masks, overlay, to_uint8, triptych
from visionjax.viz.palette import colorize, palette

__all__ = ["colorize", "draw_boxes", "draw_masks", "overlay", "palette", "to_uint8",
           "triptych"]

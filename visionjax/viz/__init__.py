"""visionjax.viz: learning curves, segmentation overlays, prediction grids."""

"""visionjax.ops."""

"""visionjax.data."""

"""visionjax.losses."""

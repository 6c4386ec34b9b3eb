"""What a run leaves beside the model: metrics.json, run.json and the model card (README.md)."""

"""Evaluation: multi-round metrics (sharded, resumable), reports and plots, and the IoU-vs-timestep analysis."""

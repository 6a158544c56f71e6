"""Admin of experiments and their results."""

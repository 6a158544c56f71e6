"""Admin of datasets and examples."""

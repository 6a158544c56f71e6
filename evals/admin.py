"""The admin of evals: datasets and their examples (evals.admin_datasets), experiments and their
results (evals.admin_experiments). Importing them registers their ModelAdmins."""

from evals import admin_datasets, admin_experiments  # noqa: F401

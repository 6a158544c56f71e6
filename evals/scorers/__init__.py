"""Scorers: how an experiment judges a run's output against an example (evals.scorers.base).

The built-in ones live in this package's modules, custom ones are named in settings.EVALS_SCORERS;
`evals.scorers.registry` finds either by name."""

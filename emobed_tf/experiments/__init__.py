"""Experiments: one run (``experiment``) and its folder (``rundir``), distribution, scoring,
and what is built on runs: comparisons, sweeps, cross-validation, evaluation reports,
significance tests, post-processing, figures and the demo corpora. Imports ``data``,
``model``, ``records`` and the ground floor; the command lines sit above."""

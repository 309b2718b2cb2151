"""Evaluation: metrics, paired statistics, verdicts and the written report (stage ``report``).

The layers, each using only those above it:

- :mod:`~tgmatl.evaluation.metrics`: a unit's metrics (accuracy, F1, R², retrieval P@1 and
  MAP@R); the ``train`` stages call it for every unit.
- :mod:`~tgmatl.evaluation.terms`: per-sample terms whose unit mean is a metric (the train
  stages write MAP@R's jackknife terms with their predictions).
- :mod:`~tgmatl.evaluation.stats`: the statistic, a paired test over units with its variance.
- :mod:`~tgmatl.evaluation.comparisons`: which cells are compared on which metric, and the
  findings of the paper as parts to test.
- :mod:`~tgmatl.evaluation.evidence`: verdicts, the TG-MATL table and the claims table.
- :mod:`~tgmatl.evaluation.plots` and :mod:`~tgmatl.evaluation.report`: the writers.

Takes ``results/<backbone>/{train,tg}/`` (per-unit JSON, predictions and test embeddings),
``data/scores.parquet``, ``data/split.parquet``, ``samples.parquet`` and ``metrics/mi.json``.
Gives ``metrics/table2.json``, ``metrics/comparisons.json``, ``metrics/claims.json``,
``plots/*.png`` and ``report.md``.
"""

"""Method: the evaluation protocol's split and TG-MATL's task-guided selection (stages ``split``,
``score``, ``select``).

Takes ``samples.parquet``. Gives:

- ``data/split.parquet`` (``repeat``, ``sample_id``, ``test``, ``fold``): the held-out test split
  and the cross-validation folds, grouped by scene (:mod:`~tgmatl.method.splitting`);
- ``data/scores.parquet`` and ``metrics/mi.json``: per (repeat, fold, sample) the box geometry
  normalised on the fold's training samples (:mod:`~tgmatl.method.geometry`), the discrete box
  label, and the relevance score ``s_i`` from the mutual information between geometry and class
  (:mod:`~tgmatl.method.mi`, Eqs. 5, Table I);
- ``data/masks.parquet``: which training samples may anchor triplets (Eqs. 6–13,
  :mod:`~tgmatl.method.selection`).
"""

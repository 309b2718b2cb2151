"""Reading one backbone's inputs (embeddings, split, scores, masks) and checking they agree."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tgmatl.errors import InputError


@dataclass
class FoldTable:
    """One fold's rows of scores.parquet, aligned to :attr:`SetupInputs.sample_ids`."""

    class_id: np.ndarray
    box_label: np.ndarray
    features: np.ndarray        # [N, F] normalised geometry features
    score: np.ndarray
    mask: np.ndarray | None = None  # TG-MATL selection (training samples), from masks.parquet


@dataclass
class SetupInputs:
    sample_ids: np.ndarray      # [N] str, sorted
    x: np.ndarray               # [N, D] float32 backbone embeddings
    test: np.ndarray            # [N] bool
    fold: np.ndarray            # [N] int: validation fold, -1 for test
    class_names: list[str]
    feature_names: list[str]
    folds: dict[int, FoldTable] = field(default_factory=dict)

    @property
    def n_folds(self) -> int:
        return len(self.folds)


def _read_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = pq.read_table(path, columns=["sample_id", "embedding"])
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise InputError(f"{path}: cannot read embeddings (sample_id, embedding): {exc}") from None
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
    col = table.column("embedding").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise InputError(f"{path}: column embedding must be fixed_size_list<float32>, "
                         f"got {col.type}")
    x = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    x = x.reshape(len(ids), col.type.list_size)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise InputError(f"{path}: non-finite embedding for sample {ids[bad[0]]} "
                         f"({len(bad)} sample(s) in all)")
    return ids, x


def load_inputs(
    embeddings: str | Path,
    split: str | Path,
    scores: str | Path,
    masks: str | Path | None = None,
    samples: str | Path | None = None,
) -> SetupInputs:
    """Read and cross-check the parquet files of one backbone (see the data contracts).

    Every sample of ``split`` must have an embedding and a row per fold in ``scores``; the roles
    in ``scores`` must agree with the split. Class names come from ``samples`` when given (else
    ``class_<id>``).
    """
    embeddings, split, scores = Path(embeddings), Path(split), Path(scores)
    ids, x = _read_embeddings(embeddings)
    sp = pd.read_parquet(split, columns=["sample_id", "test", "fold"]).sort_values("sample_id")
    sp = sp.reset_index(drop=True)
    dup = sp["sample_id"][sp["sample_id"].duplicated()]
    if len(dup):
        raise InputError(f"{split}: duplicate sample_id {dup.iloc[0]}")
    pos = pd.Series(np.arange(len(ids)), index=ids)
    dup_ids = pos.index[pos.index.duplicated()]
    if len(dup_ids):
        raise InputError(f"{embeddings}: duplicate sample_id {dup_ids[0]}")
    missing = sp.loc[~sp["sample_id"].isin(pos.index), "sample_id"]
    if len(missing):
        raise InputError(f"{embeddings}: no embedding for sample {missing.iloc[0]} "
                         f"({len(missing)} sample(s) of {split} in all)")
    sample_ids = sp["sample_id"].to_numpy(dtype=object)
    x = x[pos[sample_ids].to_numpy()]
    test = sp["test"].to_numpy(bool)
    fold = sp["fold"].to_numpy(np.int64)

    meta = pq.read_schema(scores).metadata or {}
    sc = pd.read_parquet(scores)
    feat_cols = [c for c in sc.columns if c.startswith("feat_")]
    if b"tgmatl" in meta:
        feature_names = list(json.loads(meta[b"tgmatl"])["features"])
        if [f"feat_{f}" for f in feature_names] != feat_cols:
            raise InputError(f"{scores}: feat_* columns {feat_cols} do not match the metadata "
                             f"features {feature_names}")
    else:
        feature_names = [c[len("feat_"):] for c in feat_cols]
    if not feat_cols:
        raise InputError(f"{scores}: no feat_* columns")
    n_folds = int(fold.max()) + 1 if (fold >= 0).any() else 0
    mk = pd.read_parquet(masks) if masks is not None else None
    folds: dict[int, FoldTable] = {}
    for f in range(n_folds):
        rows = sc[sc["fold"] == f].set_index("sample_id")
        absent = [s for s in sample_ids if s not in rows.index]
        if absent:
            raise InputError(f"{scores}: fold {f} has no row for sample {absent[0]} "
                             f"({len(absent)} sample(s) in all)")
        rows = rows.loc[sample_ids]
        role = np.where(test, "test", np.where(fold == f, "val", "train"))
        wrong = np.flatnonzero(rows["role"].to_numpy() != role)
        if len(wrong):
            i = wrong[0]
            raise InputError(f"{scores}: fold {f}, sample {sample_ids[i]} has role "
                             f"{rows['role'].iloc[i]!r} but {split} makes it {role[i]!r}")
        table = FoldTable(
            class_id=rows["class_id"].to_numpy(np.int64),
            box_label=rows["box_label"].to_numpy(np.int64),
            features=rows[feat_cols].to_numpy(np.float32),
            score=rows["score"].to_numpy(np.float64),
        )
        if mk is not None:
            table.mask = _fold_mask(mk, f, sample_ids, role == "train", Path(masks))
        folds[f] = table
    if n_folds < 1:
        raise InputError(f"{split}: no cross-validation folds (every sample is a test sample)")
    n_classes = int(max(t.class_id.max() for t in folds.values())) + 1
    class_names = _class_names(samples, n_classes)
    return SetupInputs(sample_ids, x, test, fold, class_names, feature_names, folds)


def _fold_mask(mk: pd.DataFrame, f: int, sample_ids: np.ndarray, train: np.ndarray,
               path: Path) -> np.ndarray:
    rows = mk[mk["fold"] == f].set_index("sample_id")["mask"]
    needed = sample_ids[train]
    absent = [s for s in needed if s not in rows.index]
    if absent:
        raise InputError(f"{path}: fold {f} has no mask for training sample {absent[0]} "
                         f"({len(absent)} sample(s) in all)")
    out = np.zeros(len(sample_ids), bool)
    out[train] = rows.loc[needed].to_numpy(bool)
    return out


def _class_names(samples: str | Path | None, n_classes: int) -> list[str]:
    if samples is None:
        return [f"class_{i}" for i in range(n_classes)]
    df = pd.read_parquet(samples, columns=["class_id", "class_name"]).drop_duplicates()
    names = dict(zip(df["class_id"].astype(int), df["class_name"].astype(str), strict=True))
    lost = [i for i in range(n_classes) if i not in names]
    if lost:
        raise InputError(f"{samples}: no class_name for class_id {lost[0]}")
    return [names[i] for i in range(n_classes)]

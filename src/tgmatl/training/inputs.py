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

Unit = tuple[int, int]  # (repeat, fold): one training / validation / test assignment


@dataclass
class FoldTable:
    """One unit's rows of scores.parquet, aligned to :attr:`SetupInputs.sample_ids`."""

    role: np.ndarray            # [N] "train" | "val" | "test"
    class_id: np.ndarray
    box_label: np.ndarray
    features: np.ndarray        # [N, F] normalised geometry features
    score: np.ndarray
    mask: np.ndarray | None = None  # TG-MATL selection (training samples), from masks.parquet


@dataclass
class SetupInputs:
    """One backbone's embeddings and every evaluation unit (repeat, fold) of the split."""

    sample_ids: np.ndarray      # [N] str, sorted
    x: np.ndarray               # [N, D] float32 backbone embeddings
    class_names: list[str]
    feature_names: list[str]
    units: dict[Unit, FoldTable] = field(default_factory=dict)
    image: np.ndarray | None = None  # [N] image of each sample (same-image retrieval exclusion)

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_folds(self) -> int:
        return len({f for _, f in self.units})

    @property
    def n_repeats(self) -> int:
        return len({r for r, _ in self.units})


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

    ``split`` is long: one row per (repeat, sample). Every sample of ``split`` must have an
    embedding and a row per unit (repeat, fold) in ``scores``, whose roles must agree with the
    split. Class names and images come from ``samples`` when given (else ``class_<id>`` and
    one image per sample).
    """
    embeddings, split, scores = Path(embeddings), Path(split), Path(scores)
    ids, x = _read_embeddings(embeddings)
    sp = pd.read_parquet(split)
    for col in ("repeat", "sample_id", "test", "fold"):
        if col not in sp.columns:
            raise InputError(f"{split}: missing column {col} (rerun the split stage)")
    sp = sp.sort_values(["repeat", "sample_id"]).reset_index(drop=True)
    dup = sp[sp.duplicated(["repeat", "sample_id"])]
    if len(dup):
        raise InputError(f"{split}: duplicate sample_id {dup['sample_id'].iloc[0]} in repeat "
                         f"{dup['repeat'].iloc[0]}")
    repeats = sorted(int(r) for r in sp["repeat"].unique())
    sample_ids = np.sort(sp["sample_id"].unique()).astype(object)
    for r in repeats:
        got = sp.loc[sp["repeat"] == r, "sample_id"].to_numpy(dtype=object)
        if len(got) != len(sample_ids) or (got != sample_ids).any():
            raise InputError(f"{split}: repeat {r} does not hold every sample once")
    pos = pd.Series(np.arange(len(ids)), index=ids)
    dup_ids = pos.index[pos.index.duplicated()]
    if len(dup_ids):
        raise InputError(f"{embeddings}: duplicate sample_id {dup_ids[0]}")
    missing = [s for s in sample_ids if s not in pos.index]
    if missing:
        raise InputError(f"{embeddings}: no embedding for sample {missing[0]} "
                         f"({len(missing)} sample(s) of {split} in all)")
    x = x[pos[sample_ids].to_numpy()]

    meta = pq.read_schema(scores).metadata or {}
    sc = pd.read_parquet(scores)
    if "repeat" not in sc.columns:
        raise InputError(f"{scores}: missing column repeat (rerun the score stage)")
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
    mk = pd.read_parquet(masks) if masks is not None else None
    sc_groups = dict(iter(sc.groupby(["repeat", "fold"], sort=True)))
    mk_groups = dict(iter(mk.groupby(["repeat", "fold"], sort=True))) if mk is not None else {}
    units: dict[Unit, FoldTable] = {}
    for r in repeats:
        part = sp[sp["repeat"] == r]
        test = part["test"].to_numpy(bool)
        fold = part["fold"].to_numpy(np.int64)
        for f in sorted(int(v) for v in np.unique(fold[fold >= 0])):
            role = np.where(test, "test", np.where(fold == f, "val", "train"))
            key = (r, f)
            if key not in sc_groups:
                raise InputError(f"{scores}: no rows for repeat {r}, fold {f} of {split}")
            rows = sc_groups[key].set_index("sample_id")
            absent = [s for s in sample_ids if s not in rows.index]
            if absent:
                raise InputError(f"{scores}: repeat {r}, fold {f} has no row for sample "
                                 f"{absent[0]} ({len(absent)} sample(s) in all)")
            rows = rows.loc[sample_ids]
            wrong = np.flatnonzero(rows["role"].to_numpy() != role)
            if len(wrong):
                i = wrong[0]
                raise InputError(f"{scores}: repeat {r}, fold {f}, sample {sample_ids[i]} has "
                                 f"role {rows['role'].iloc[i]!r} but {split} makes it "
                                 f"{role[i]!r}")
            table = FoldTable(
                role=role,
                class_id=rows["class_id"].to_numpy(np.int64),
                box_label=rows["box_label"].to_numpy(np.int64),
                features=rows[feat_cols].to_numpy(np.float32),
                score=rows["score"].to_numpy(np.float64),
            )
            if mk is not None:
                table.mask = _unit_mask(mk_groups.get(key), key, sample_ids, role == "train",
                                        Path(masks))
            units[key] = table
    if not units:
        raise InputError(f"{split}: no cross-validation folds (every sample is a test sample)")
    n_classes = int(max(t.class_id.max() for t in units.values())) + 1
    class_names, image = _sample_info(samples, n_classes, sample_ids)
    return SetupInputs(sample_ids, x, class_names, feature_names, units, image)


def _unit_mask(rows: pd.DataFrame | None, key: Unit, sample_ids: np.ndarray,
               train: np.ndarray, path: Path) -> np.ndarray:
    r, f = key
    needed = sample_ids[train]
    if rows is None:
        raise InputError(f"{path}: no masks for repeat {r}, fold {f} (rerun the select stage)")
    rows = rows.set_index("sample_id")["mask"]
    absent = [s for s in needed if s not in rows.index]
    if absent:
        raise InputError(f"{path}: repeat {r}, fold {f} has no mask for training sample "
                         f"{absent[0]} ({len(absent)} sample(s) in all)")
    out = np.zeros(len(sample_ids), bool)
    out[train] = rows.loc[needed].to_numpy(bool)
    return out


def _sample_info(samples: str | Path | None, n_classes: int,
                 sample_ids: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class names by id and each sample's image (``image_path``; own id without samples)."""
    if samples is None:
        return [f"class_{i}" for i in range(n_classes)], sample_ids.astype(str)
    df = pd.read_parquet(samples)
    for col in ("sample_id", "class_id", "class_name"):
        if col not in df.columns:
            raise InputError(f"{samples}: missing column {col}")
    pairs = df[["class_id", "class_name"]].drop_duplicates()
    names = dict(zip(pairs["class_id"].astype(int), pairs["class_name"].astype(str),
                     strict=True))
    lost = [i for i in range(n_classes) if i not in names]
    if lost:
        raise InputError(f"{samples}: no class_name for class_id {lost[0]}")
    by_id = df.set_index("sample_id")
    absent = [s for s in sample_ids if s not in by_id.index]
    if absent:
        raise InputError(f"{samples}: no row for sample {absent[0]} of the split")
    image = (by_id.loc[sample_ids, "image_path"].astype(str).to_numpy()
             if "image_path" in by_id.columns else sample_ids.astype(str))
    return [names[i] for i in range(n_classes)], image

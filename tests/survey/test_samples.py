"""The samples.parquet contract: one reader whose errors name the file and the sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.errors import InputError
from tgmatl.survey.samples import read_samples


def _write(tmp_path, df):
    path = tmp_path / "samples.parquet"
    df.to_parquet(path)
    return path


def _samples(n=4):
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "class_id": np.arange(n) % 2,
            "class_name": np.where(np.arange(n) % 2, "deer", "cow"),
            "xmin": 0.0,
            "xmax": 10.0,
            "ymin": 0.0,
            "ymax": 5.0,
        }
    )


def test_read_samples_ok(tmp_path):
    df = read_samples(_write(tmp_path, _samples()))
    assert list(df.columns) == [
        "sample_id",
        "class_id",
        "class_name",
        "xmin",
        "xmax",
        "ymin",
        "ymax",
    ]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.drop(columns="ymax"), "missing column"),
        (lambda d: d.assign(sample_id=["a", "a", "b", "c"]), "sample a: duplicate"),
        (lambda d: d.assign(xmax=[10.0, 0.0, 10.0, 10.0]), "sample s00001: empty or non-finite"),
        (lambda d: d.assign(ymin=[0.0, 0.0, np.nan, 0.0]), "sample s00002: empty"),
        (lambda d: d.assign(class_id=[0, -1, 0, 1]), "sample s00001: bad class_id"),
        (lambda d: d.iloc[:0], "no samples"),
    ],
)
def test_read_samples_errors_name_file_and_sample(tmp_path, edit, match):
    path = _write(tmp_path, edit(_samples()))
    with pytest.raises(InputError, match=match) as exc:
        read_samples(path)
    assert str(path) in str(exc.value)


def test_missing_file_and_only_requested_columns(tmp_path):
    with pytest.raises(InputError, match="samples table not found"):
        read_samples(tmp_path / "samples.parquet")
    df = read_samples(_write(tmp_path, _samples()), ("sample_id", "class_id"))
    assert list(df.columns) == ["sample_id", "class_id"]
    assert df["class_id"].dtype == np.int64

"""Atomic writers: a failure half-way leaves neither a partial file nor a partial folder."""

import json
import os
import stat

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tgmatl.io import (
    atomic_dir,
    atomic_path,
    current_umask,
    write_json,
    write_parquet,
    write_text,
)


def test_atomic_path_failure_leaves_old_content_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_swaps_in_complete_content(tmp_path):
    out = tmp_path / "tiles"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]
    with atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]


def test_write_json_is_stable_and_rejects_nan(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": {"d": 2.5, "c": 1}})
    first = path.read_bytes()
    write_json(path, {"a": {"c": 1, "d": 2.5}, "b": 1})
    assert path.read_bytes() == first
    assert json.loads(first) == {"a": {"c": 1, "d": 2.5}, "b": 1}
    with pytest.raises(ValueError):
        write_json(path, {"x": float("nan")})
    assert path.read_bytes() == first


def test_write_parquet_from_dataframe(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(path, pd.DataFrame({"sample_id": ["s1", "s2"], "v": [1.0, 2.0]}))
    assert pq.read_table(path).column("sample_id").to_pylist() == ["s1", "s2"]


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert os.umask(umask) == umask  # still what the fixture set


def test_outputs_get_the_plain_open_and_mkdir_modes(tmp_path, umask):
    # What a plain open() / mkdir() gives under this umask, measured rather than assumed.
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "plain_dir").mkdir()
    want_file, want_dir = _mode(tmp_path / "plain.txt"), _mode(tmp_path / "plain_dir")
    assert want_file == 0o666 & ~umask and want_dir == 0o777 & ~umask

    write_json(tmp_path / "m.json", {"a": 1})
    write_text(tmp_path / "r.md", "text")
    write_parquet(tmp_path / "t.parquet", pd.DataFrame({"v": [1]}))
    with atomic_path(tmp_path / "w.bin") as tmp:
        tmp.unlink()  # a writer that replaces the path gets the plain mode as well
        tmp.write_bytes(b"\0")
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "f.png").write_bytes(b"\0")
        write_json(tmp / "report.json", {})
    for name in ("m.json", "r.md", "t.parquet", "w.bin", "folder/sub/f.png",
                 "folder/report.json"):
        assert _mode(tmp_path / name) == want_file, name
    for name in ("folder", "folder/sub"):
        assert _mode(tmp_path / name) == want_dir, name

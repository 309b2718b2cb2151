"""Stage plumbing: configuration and input errors become one line and exit status 2."""

import argparse

import pytest

from tgmatl import cli
from tgmatl.errors import InputError


def _args(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return argparse.Namespace(params=str(p))


def test_params_error_exits_2_with_one_line(tmp_path, capsys):
    def main(args, params):
        raise AssertionError("not reached")

    with pytest.raises(SystemExit) as exc:
        cli.run(main, _args(tmp_path, "- not a mapping\n"))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tgmatl: error:") and "params.yaml" in err[0]


def test_input_error_exits_2(tmp_path, capsys):
    def main(args, params):
        raise InputError("scene_01.txt:3: class id 7 not in classes.txt")

    with pytest.raises(SystemExit) as exc:
        cli.run(main, _args(tmp_path, "seed: 0\n"))
    assert exc.value.code == 2
    assert "scene_01.txt:3" in capsys.readouterr().err


def test_main_receives_params(tmp_path):
    seen = {}
    cli.run(lambda a, p: seen.update(p), _args(tmp_path, "seed: 3\n"))
    assert seen == {"seed": 3}

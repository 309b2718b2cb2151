"""Shared plumbing for the thin scripts under ``stages/``.

A stage script parses its paths (given by ``dvc.yaml``), reads its params sections, calls one
library function and writes its outputs atomically. Configuration and input errors are reported as
one clear line (``tgmatl: error: ...``) and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from tgmatl.errors import InputError
from tgmatl.params import ParamsError, load_params


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


StageMain = Callable[[argparse.Namespace, dict[str, Any]], None]


def run(main: StageMain, args: argparse.Namespace) -> None:
    """Load params, call ``main(args, params)``; turn known errors into a one-line exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = load_params(args.params)
        main(args, params)
    except (ParamsError, InputError) as exc:
        print(f"tgmatl: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

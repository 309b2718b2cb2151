"""Stage `select`: per-fold task-guided selection masks (Eqs. 6-13) -> data/masks.parquet."""

import pandas as pd

from tgmatl import cli
from tgmatl.config import SamplingParams
from tgmatl.errors import InputError
from tgmatl.io import write_parquet
from tgmatl.method.selection import select_folds
from tgmatl.params import read_section, read_seed


def main(args, params):
    sampling = read_section(SamplingParams, params, "sampling")
    try:
        scores = pd.read_parquet(args.scores)
    except FileNotFoundError:
        raise InputError(f"{args.scores}: scores file not found") from None
    try:
        masks = select_folds(scores, sampling, read_seed(params))
    except InputError as exc:
        raise InputError(f"{args.scores}: {exc}") from None
    write_parquet(args.out, masks)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--scores", required=True, help="scores.parquet")
    ap.add_argument("--out", required=True, help="masks.parquet to write")
    cli.run(main, ap.parse_args())

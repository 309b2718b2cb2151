"""Stage `score`: per-fold normalised box features, box labels and relevance scores; Table I."""

import pandas as pd

from tgmatl import cli
from tgmatl.config import GeometryParams, MIParams
from tgmatl.errors import InputError
from tgmatl.io import write_json
from tgmatl.method.mi import score_folds, table_one, write_scores
from tgmatl.params import read_section, read_seed
from tgmatl.survey.samples import read_samples


def main(args, params):
    geometry = read_section(GeometryParams, params, "geometry")
    mi = read_section(MIParams, params, "mi")
    seed = read_seed(params)
    samples = read_samples(args.samples)
    try:
        split = pd.read_parquet(args.split)
    except FileNotFoundError:
        raise InputError(f"{args.split}: split file not found") from None
    try:
        table, meta = score_folds(samples, split, geometry, mi, seed)
    except InputError as exc:
        raise InputError(f"{args.split}: {exc}") from None
    write_scores(args.out, table, meta)
    write_json(args.metrics, table_one(samples, geometry, mi, seed))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--samples", required=True, help="samples.parquet")
    ap.add_argument("--split", required=True, help="split.parquet")
    ap.add_argument("--out", required=True, help="scores.parquet to write")
    ap.add_argument("--metrics", required=True, help="Table I JSON (mi.json) to write")
    cli.run(main, ap.parse_args())

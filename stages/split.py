"""Stage `split`: held-out test set and stratified folds over the rest -> data/split.parquet."""

from tgmatl import cli
from tgmatl.config import SplitParams
from tgmatl.io import write_parquet
from tgmatl.params import read_section, read_seed
from tgmatl.samples import read_samples
from tgmatl.splitting import make_split


def main(args, params):
    p = read_section(SplitParams, params, "split")
    samples = read_samples(args.samples, ("sample_id", "class_id", "xmin", "xmax", "ymin", "ymax"))
    write_parquet(args.out, make_split(samples, p, read_seed(params)))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--samples", required=True, help="samples.parquet")
    ap.add_argument("--out", required=True, help="split.parquet to write")
    cli.run(main, ap.parse_args())

"""Stage `split`: per repeat, a held-out test set and stratified folds -> data/split.parquet."""

from tgmatl import cli
from tgmatl.config import EvalParams, SplitParams
from tgmatl.io import write_parquet
from tgmatl.method.splitting import make_split
from tgmatl.params import read_section, read_seed
from tgmatl.survey.samples import read_samples


def main(args, params):
    p = read_section(SplitParams, params, "split")
    e = read_section(EvalParams, params, "eval")
    columns = ["sample_id", "class_id", "xmin", "xmax", "ymin", "ymax"]
    if p.group == "scene":
        columns.append("scene_id")
    samples = read_samples(args.samples, columns)
    write_parquet(args.out, make_split(samples, p, e, read_seed(params)))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--samples", required=True, help="samples.parquet")
    ap.add_argument("--out", required=True, help="split.parquet to write")
    cli.run(main, ap.parse_args())

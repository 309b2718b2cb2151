"""Stage `report`: Table II (metrics JSON, report.md) and PNG plots from every setup's results."""

from tgmatl import cli
from tgmatl.config import EmbedParams
from tgmatl.params import read_section
from tgmatl.report import run_report


def main(args, params):
    backbones = read_section(EmbedParams, params, "embed").backbones
    run_report(results_dir=args.results, scores=args.scores, mi=args.mi,
               metrics_out=args.metrics, plots_dir=args.plots, report_out=args.report,
               backbones=backbones)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--results", required=True, help="results folder (<backbone>/<setup>.json)")
    ap.add_argument("--scores", required=True, help="scores.parquet")
    ap.add_argument("--mi", required=True, help="Table I JSON of the score stage")
    ap.add_argument("--metrics", required=True, help="table2.json to write")
    ap.add_argument("--plots", required=True, help="folder for the PNG plots")
    ap.add_argument("--report", required=True, help="report.md to write")
    cli.run(main, ap.parse_args())

"""Stage `report`: Table II, the paired comparisons and the findings' verdicts (metrics JSON,
report.md) and PNG plots from every setup's results."""

import pandas as pd

from tgmatl import cli
from tgmatl.config import SETUPS, EmbedParams, EvalParams, TrainParams, backbone_section
from tgmatl.embedding.backbones.classical import LABEL as CLASSICAL_LABEL
from tgmatl.errors import InputError
from tgmatl.evaluation.report import run_report
from tgmatl.method.splitting import leakage
from tgmatl.params import read_section
from tgmatl.survey.samples import read_samples


def scene_of(samples: pd.DataFrame) -> dict[str, str]:
    """sample id -> scene id: the independent groups the paired tests cluster on."""
    missing = samples["scene_id"].isna() | (samples["scene_id"].astype(str) == "")
    if missing.any():
        raise InputError(f"samples.parquet: sample {samples.loc[missing, 'sample_id'].iloc[0]} "
                         "has no scene_id (the paired tests cluster test samples by scene)")
    return dict(zip(samples["sample_id"].astype(str), samples["scene_id"].astype(str),
                    strict=True))


def main(args, params):
    backbones = read_section(EmbedParams, params, "embed").backbones
    ev = read_section(EvalParams, params, "eval")
    chosen = read_section(TrainParams, params, "train").setups
    # the report's fixed order: the paper's five first, then the ones beyond the paper
    setups = [s for s in SETUPS if s in chosen or s == "tg_matl"]
    # the classical baseline is marked in report.md's column names (issue 17)
    labels = {b: CLASSICAL_LABEL for b in backbones
              if backbone_section(params, b).family == "classical"}
    samples = read_samples(args.samples, ("sample_id", "class_id", "class_name", "scene_id",
                                          "image_path", "xmin", "xmax", "ymin", "ymax"))
    try:
        split = pd.read_parquet(args.split)
    except FileNotFoundError:
        raise InputError(f"{args.split}: split file not found") from None
    run_report(results_dir=args.results, scores=args.scores, mi=args.mi,
               metrics_out=args.metrics, plots_dir=args.plots, report_out=args.report,
               backbones=backbones, eval_params=ev, claims_out=args.claims,
               comparisons_out=args.comparisons, split=split,
               scenes=scene_of(samples), leakage=leakage(samples, split),
               setups=setups, labels=labels)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--results", required=True, help="results folder (<backbone>/<setup>.json)")
    ap.add_argument("--scores", required=True, help="scores.parquet")
    ap.add_argument("--split", required=True, help="split.parquet (leakage counts)")
    ap.add_argument("--samples", required=True, help="samples.parquet (images and scenes)")
    ap.add_argument("--mi", required=True, help="Table I JSON of the score stage")
    ap.add_argument("--metrics", required=True, help="table2.json to write")
    ap.add_argument("--comparisons", required=True, help="comparisons.json to write")
    ap.add_argument("--claims", required=True, help="claims.json to write")
    ap.add_argument("--plots", required=True, help="folder for the PNG plots")
    ap.add_argument("--report", required=True, help="report.md to write")
    cli.run(main, ap.parse_args())

"""Stages `train` / `train_tg`: projection head (setup's loss), task heads, test metrics a fold."""

from tgmatl.tfsetup import start_tensorflow

# Before tgmatl.training imports TensorFlow: no CUDA probing noise where no GPU is expected.
start_tensorflow()

from tgmatl import cli  # noqa: E402
from tgmatl.config import HeadsParams, SamplingParams, TrainParams  # noqa: E402
from tgmatl.params import read_section, read_seed  # noqa: E402
from tgmatl.training import REGISTRY, get_setup, run_train_stage  # noqa: E402


def main(args, params):
    train = read_section(TrainParams, params, "train")
    heads = read_section(HeadsParams, params, "heads")
    # Only setups that select triplets read sampling.*: dvc.yaml lists the section for train_tg
    # alone, so a sampling sweep never reruns the other setups.
    uses = get_setup(args.setup).uses_sampling
    sampling = read_section(SamplingParams, params, "sampling") if uses else None
    run_train_stage(
        backbone=args.backbone, setup=args.setup, embeddings=args.embeddings, split=args.split,
        scores=args.scores, masks=args.masks, samples=args.samples, out=args.out,
        models=args.models, test_embeddings=args.test_embeddings, predictions=args.predictions,
        train=train, heads=heads,
        sampling=sampling, seed=read_seed(params),
    )


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--setup", required=True, choices=list(REGISTRY))
    ap.add_argument("--embeddings", required=True, help="data/embeddings/<backbone>.parquet")
    ap.add_argument("--split", required=True, help="split.parquet")
    ap.add_argument("--scores", required=True, help="scores.parquet (features, box labels)")
    ap.add_argument("--masks", help="masks.parquet (tg_matl with sampling.scope=dataset)")
    ap.add_argument("--samples", help="samples.parquet, for the class names")
    ap.add_argument("--out", required=True, help="results JSON to write")
    ap.add_argument("--models", required=True, help="folder for the unit weights and curves")
    ap.add_argument("--predictions", required=True,
                    help="parquet of every unit's per-test-sample outputs (paired statistics)")
    ap.add_argument("--test-embeddings", required=True,
                    help="parquet of the first unit's test embeddings (the report's 2-D map)")
    cli.run(main, ap.parse_args())

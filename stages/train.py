"""Stages `train` / `train_tg`: per setup, projection head (the setup's loss), task heads and
test metrics on every unit of one backbone. Without --setup: every setup of train.setups."""

from tgmatl.tfsetup import start_tensorflow

# Before tgmatl.training imports TensorFlow: no CUDA probing noise where no GPU is expected.
start_tensorflow()

from tgmatl import cli  # noqa: E402
from tgmatl.config import EvalParams, HeadsParams, SamplingParams, TrainParams  # noqa: E402
from tgmatl.params import read_section, read_seed  # noqa: E402
from tgmatl.training import REGISTRY, get_setup, run_train_stage  # noqa: E402


def main(args, params):
    train = read_section(TrainParams, params, "train")
    heads = read_section(HeadsParams, params, "heads")
    queries = read_section(EvalParams, params, "eval").retrieval_queries
    setups = [args.setup] if args.setup else list(train.setups)
    # Only setups that select triplets read sampling.*: dvc.yaml lists the section for train_tg
    # alone, so a sampling sweep never reruns the other setups.
    uses = any(get_setup(s).uses_sampling for s in setups)
    sampling = read_section(SamplingParams, params, "sampling") if uses else None
    run_train_stage(
        backbone=args.backbone, setups=setups, embeddings=args.embeddings, split=args.split,
        scores=args.scores, masks=args.masks, samples=args.samples, out=args.out,
        models=args.models, train=train, heads=heads, sampling=sampling,
        seed=read_seed(params), retrieval_queries=queries,
    )


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--setup", choices=list(REGISTRY),
                    help="one setup (default: every setup of train.setups)")
    ap.add_argument("--embeddings", required=True, help="data/embeddings/<backbone>.parquet")
    ap.add_argument("--split", required=True, help="split.parquet")
    ap.add_argument("--scores", required=True, help="scores.parquet (features, box labels)")
    ap.add_argument("--masks", help="masks.parquet (tg_matl with sampling.scope=dataset)")
    ap.add_argument("--samples", help="samples.parquet, for the class names")
    ap.add_argument("--out", required=True,
                    help="results folder: <setup>.json, .predictions.parquet, "
                         ".test_embeddings.parquet")
    ap.add_argument("--models", required=True, help="folder for each setup's weights and curves")
    cli.run(main, ap.parse_args())

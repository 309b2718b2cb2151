"""Stage `isolate`: one sample per annotated target, from the tiles (isolate.*)."""

from tgmatl import cli
from tgmatl.config import IsolateParams
from tgmatl.params import read_section
from tgmatl.survey.isolate import isolate_samples


def main(args, params):
    p = read_section(IsolateParams, params, "isolate")
    isolate_samples(args.tiles, p, out=args.out, metrics=args.metrics, root=args.root)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--tiles", required=True, help="tiles folder written by stage `tile`")
    ap.add_argument("--root", required=True,
                    help="survey folder the tiles were cut from (read by isolate.policy recentre)")
    ap.add_argument("--out", required=True, help="samples folder to write")
    ap.add_argument("--metrics", required=True, help="metrics JSON to write")
    cli.run(main, ap.parse_args())

"""Stage `demo`: write the deterministic synthetic drone survey (AWIR layout) to --out."""

from pathlib import Path

from tgmatl import cli
from tgmatl.config import DemoParams
from tgmatl.params import read_section, read_seed
from tgmatl.survey.demo import generate_survey


def main(args, params):
    p = read_section(DemoParams, params, "demo")
    generate_survey(p, read_seed(params), Path(args.out))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--out", required=True, help="output folder (replaced atomically)")
    cli.run(main, ap.parse_args())

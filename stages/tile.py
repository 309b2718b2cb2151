"""Stage `tile`: read the survey (data.*) and cut its scenes into tiles (tile.*)."""

from tgmatl import cli
from tgmatl.config import DataParams, TileParams
from tgmatl.params import read_section
from tgmatl.survey.tiling import tile_survey


def main(args, params):
    data = read_section(DataParams, params, "data")
    tile = read_section(TileParams, params, "tile")
    # The root comes from dvc.yaml (`--root ${data.root}`), so DVC tracks it as a dependency.
    tile_survey(args.root, data.format, data.ignore_classes, tile, out=args.out,
                on_error=data.on_error)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--root", required=True, help="survey folder (data.root)")
    ap.add_argument("--out", required=True, help="tiles folder to write")
    cli.run(main, ap.parse_args())

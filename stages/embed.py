"""Stage `embed`: one frozen encoder (backbones.<name>) over every sample, to Parquet.

A backbone with family: precomputed has its stored vectors checked and written instead.
"""

from tgmatl import cli
from tgmatl.config import EmbedParams, backbone_section
from tgmatl.params import read_section, read_seed


def main(args, params):
    from tgmatl.embed import configure_threads, embed_samples

    embed = read_section(EmbedParams, params, "embed")
    backbone = backbone_section(params, args.backbone)
    if backbone.family != "precomputed":  # stored vectors need no TensorFlow
        configure_threads()  # before TensorFlow starts
    embed_samples(args.samples, args.out, args.backbone, backbone, embed, read_seed(params))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--backbone", required=True, help="a name under backbones: in params.yaml")
    ap.add_argument("--samples", required=True, help="folder with samples.parquet and images")
    ap.add_argument("--out", required=True, help="output Parquet file")
    cli.run(main, ap.parse_args())

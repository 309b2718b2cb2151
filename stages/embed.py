"""Stage `embed`: one frozen encoder (backbones.<name>) over every sample, to Parquet.

A backbone with family: precomputed has its stored vectors checked and written instead; one
with family: classical gets hand-crafted descriptors (an offline baseline, not a ViT).
"""

from tgmatl import cli
from tgmatl.config import EmbedParams, backbone_section
from tgmatl.params import read_section, read_seed


def main(args, params):
    embed = read_section(EmbedParams, params, "embed")
    backbone = backbone_section(params, args.backbone)
    if backbone.family not in ("precomputed", "classical"):  # these need no TensorFlow
        from tgmatl.tfsetup import start_tensorflow

        start_tensorflow()  # first TensorFlow import: quiet where no GPU is expected
        from tgmatl.embedding.extraction import configure_threads

        configure_threads()  # before TensorFlow's runtime starts
    from tgmatl.embedding.extraction import embed_samples

    embed_samples(args.samples, args.out, args.backbone, backbone, embed, read_seed(params))


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--backbone", required=True, help="a name under backbones: in params.yaml")
    ap.add_argument("--samples", required=True, help="folder with samples.parquet and images")
    ap.add_argument("--out", required=True, help="output Parquet file")
    cli.run(main, ap.parse_args())

"""Stage `sources`: one fingerprint per backbone in embed.backbones, what embed@<name> depends on.

For a backbone with family: precomputed, the sha256 of its file (which must lie under --inputs,
the folder dvc.yaml watches), so that a changed file reruns that backbone's embed and no other.
"""

from tgmatl import cli
from tgmatl.config import EmbedParams, backbone_section
from tgmatl.params import read_section


def main(args, params):
    from tgmatl.embedding.precomputed import write_sources

    embed = read_section(EmbedParams, params, "embed")
    backbones = {name: backbone_section(params, name) for name in embed.backbones}
    write_sources(args.out, backbones, args.inputs)


if __name__ == "__main__":
    ap = cli.parser(__doc__)
    ap.add_argument("--inputs", required=True, help="folder that holds precomputed embeddings")
    ap.add_argument("--out", required=True, help="output folder: <backbone>.json per backbone")
    cli.run(main, ap.parse_args())

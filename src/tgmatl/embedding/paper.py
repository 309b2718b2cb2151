"""``make paper``: the pipeline with the paper's encoders (DINOv2 base, MAE base, CLIP ViT-B/16).

``params.paper.yaml`` holds the values that differ from ``params.yaml`` (a partial tree of the same
keys: each backbone's ``weights`` and ``image_size``). ``python -m tgmatl.embedding.paper`` (what
``make
paper`` runs):

1. reads ``params.yaml`` and the overlay; every overlay key must exist in ``params.yaml``;
2. checks, *before* anything runs or changes, that every backbone the pipeline embeds
   (``embed.backbones``) can load its weights: a local folder must be there with the right
   layout, a keras-hub preset name or ``kaggle://``/``hf://`` handle must answer within 30 s
   (:func:`tgmatl.embedding.backbones.weights.fetch_remote_config`), ``random`` is refused
   (untrained).
   On any failure it prints one line per backbone, naming the key, the folder to set or fill and
   the download that fills it, and exits with status 2: params.yaml and every output untouched;
3. runs ``dvc exp run -S key=value ...`` for the overlay's keys (plus any dvc targets given after
   ``--``): an experiment, whose params and results DVC applies to the workspace as usual.

``--set key=value`` adds or replaces an overlay value (``--set backbones.mae.weights=/data/mae``);
``--dry-run`` checks and prints the ``dvc`` command without running it.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tgmatl.params import ParamsError, load_params, read_yaml_mapping

DEFAULT_OVERLAY = "params.paper.yaml"

# How to fill a folder for each family offline-to-be (run where there is network, then copy it).
DOWNLOADS = {
    "dinov2": ("python -c \"import keras_hub; keras_hub.models.DINOV2Backbone.from_preset("
               "'dinov2_base').save_to_preset('{folder}')\""),
    "clip": ("python -c \"import keras_hub; keras_hub.models.CLIPBackbone.from_preset("
             "'clip_vit_base_patch16').save_to_preset('{folder}')\""),
    "mae": ("python -c \"from huggingface_hub import snapshot_download; snapshot_download("
            "'facebook/vit-mae-base', local_dir='{folder}', "
            "allow_patterns=['config.json', 'model.safetensors'])\""),
}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def read_overlay(path: str | Path) -> dict[str, Any]:
    """The overlay file's values as dotted keys."""
    return flatten(read_yaml_mapping(path, "overlay file",
                                     "expected a mapping of params.yaml keys", nonempty=True))


def apply_overlay(params: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with the dotted ``overlay`` values set; unknown keys are errors."""
    merged = copy.deepcopy(dict(params))
    for key, value in overlay.items():
        node: Any = merged
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ParamsError(f"{key}: not a key of params.yaml (the overlay only sets "
                                  f"existing keys; {'.'.join(parts[:i + 1])} is missing)")
            if i == len(parts) - 1:
                if isinstance(node[part], dict):
                    raise ParamsError(f"{key}: is a section of params.yaml, not a value")
                node[part] = value
            else:
                node = node[part]
    return merged


def check_weights(params: Mapping[str, Any], probe_timeout: float | None = None) -> list[str]:
    """One problem line per embedded backbone whose weights cannot be had (empty: all good).

    Local folders are checked without starting TensorFlow; only a preset name or handle is
    probed over the network (which imports keras-hub).
    """
    from tgmatl.config import EmbedParams, backbone_section
    from tgmatl.embedding.backbones.weights import WeightsError, resolve
    from tgmatl.params import read_section

    problems = []
    for name in read_section(EmbedParams, params, "embed").backbones:
        key = f"backbones.{name}.weights"
        try:
            p = backbone_section(params, name)
        except ParamsError as exc:
            problems.append(str(exc))
            continue
        if p.family == "classical":  # hand-crafted descriptors: no weights to fetch
            continue
        assert p.weights is not None
        if p.weights == "random":
            problems.append(f"{key}: 'random' is the untrained demo encoder; set the paper's "
                            f"weights (a local folder; see {DEFAULT_OVERLAY})")
            continue
        try:
            # preset names are not known without keras-hub: a value that looks like neither a path
            # nor a handle is taken for one and probed below
            names = () if "/" in p.weights or Path(p.weights).exists() else (p.weights,)
            source = resolve(p.weights, key, names)
            if source.kind == "remote":
                from tgmatl.embedding.backbones.weights import fetch_remote_config

                fetch_remote_config(source, key, probe_timeout)
        except WeightsError as exc:
            problems.append(_with_download(str(exc), p.family, p.weights))
    return problems


def _with_download(problem: str, family: str, weights: str) -> str:
    recipe = DOWNLOADS.get(family)
    looks_local = "://" not in weights
    if recipe is None or not looks_local:
        return problem
    return f"{problem}\n    fill it where there is network, then copy it here:\n    " + \
        recipe.format(folder=weights)


def hydra_value(value: Any) -> str:
    """``value`` in the override grammar of ``dvc exp run -S`` (Hydra)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    raise ParamsError(f"cannot pass {value!r} to dvc exp run -S")


def dvc_command(overlay: Mapping[str, Any], targets: list[str]) -> list[str]:
    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc) if dvc.is_file() else "dvc", "exp", "run"]
    for key, value in overlay.items():
        cmd += ["-S", f"{key}={hydra_value(value)}"]
    return cmd + list(targets)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tgmatl.embedding.paper",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--overlay", default=DEFAULT_OVERLAY, help="values to set (params.yaml keys)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="add/replace an overlay value (YAML value), repeatable")
    ap.add_argument("--dry-run", action="store_true", help="check, print the command, stop")
    ap.add_argument("targets", nargs="*", help="dvc targets (after --), default: everything")
    args = ap.parse_args(argv)
    try:
        overlay = read_overlay(args.overlay)
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ParamsError(f"--set {item!r}: expected KEY=VALUE")
            overlay[key.strip()] = yaml.safe_load(value)
        params = apply_overlay(load_params(args.params), overlay)
        problems = check_weights(params)
    except ParamsError as exc:
        print(f"tgmatl.embedding.paper: error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print("tgmatl.embedding.paper: the paper's weights are not all available; nothing was run "
              f"or changed. Set the folders in {args.overlay} (or --set KEY=VALUE):",
              file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    cmd = dvc_command(overlay, args.targets)
    print("tgmatl.embedding.paper: weights found; running " + shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    raise SystemExit(main())

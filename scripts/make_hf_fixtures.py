"""Write the tiny Hugging Face checkpoints and reference outputs under tests/fixtures/hf/.

Run once (the outputs are committed; the tests read them offline, without torch):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers safetensors numpy
    /tmp/torchenv/bin/python scripts/make_hf_fixtures.py

(``torch==2.13.0`` pinned resolves to a CPU wheel; an unpinned torch pulls a multi-GB CUDA build.)

Each checkpoint is a randomly initialised model whose every parameter is then perturbed (layer-norm
scales away from 1, biases away from 0, CLS/mask/register tokens non-zero), so a parity test also
catches a swapped bias or a skipped norm. MAE's fixed sin-cos position table is left as
transformers builds it. For MAE the reference is the encoder with ``mask_ratio = 0`` and
``noise = arange``: every patch kept, in the identity order, as the Keras encoder sees them.

Written: ``<name>/config.json`` + ``<name>/model.safetensors`` for
``dinov2`` (Dinov2Model), ``dinov2_registers`` (Dinov2WithRegistersModel),
``mae_pretraining`` (ViTMAEForPreTraining: encoder under ``vit.``, decoder too),
``mae_encoder`` (bare ViTMAEModel, no key prefix), and ``reference.npz`` with, per name,
``<name>/images`` (NHWC, already normalised; float16 values, exact in float32),
``<name>/cls``, ``<name>/cls_mean``,
and ``mae_sincos`` (transformers' MAE position table for the fixture's grid).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    ViTMAEConfig,
    ViTMAEForPreTraining,
    ViTMAEModel,
)

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "hf"
BATCH = 2
TINY = {"hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2}


def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "position_embeddings" in name and not param.requires_grad:
                continue  # MAE's fixed sin-cos table: keep it as the architecture defines it
            noise = torch.randn(param.shape, generator=gen) * 0.05
            param.add_(noise)


def save(model: torch.nn.Module, name: str) -> None:
    folder = OUT / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    for extra in folder.iterdir():  # keep only what the loader reads
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()
        else:
            extra.chmod(0o644)


def pool(hidden: torch.Tensor, registers: int) -> dict[str, np.ndarray]:
    cls = hidden[:, 0]
    mean = hidden[:, 1 + registers :].mean(dim=1)
    return {"cls": cls.numpy(), "cls_mean": torch.cat([cls, mean], dim=-1).numpy()}


def images(size: int, rng: np.random.Generator) -> np.ndarray:
    # float16-representable values, stored as float16 (half the bytes) and exact in float32.
    return rng.normal(size=(BATCH, size, size, 3)).astype(np.float16).astype(np.float32)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    ref: dict[str, np.ndarray] = {}
    OUT.mkdir(parents=True, exist_ok=True)

    # DINOv2, plain and with registers (cls_mean must skip the register tokens).
    dino_common = dict(TINY, image_size=28, patch_size=7, mlp_ratio=2)
    for name, model, registers in [
        ("dinov2", Dinov2Model(Dinov2Config(**dino_common)), 0),
        (
            "dinov2_registers",
            Dinov2WithRegistersModel(
                Dinov2WithRegistersConfig(**dino_common, num_register_tokens=2)
            ),
            2,
        ),
    ]:
        model.eval()
        perturb(model, gen)
        save(model, name)
        for size, tag in [(28, name), (42, f"{name}_42"), (14, f"{name}_14")]:  # interpolated
            x = images(size, rng)
            with torch.no_grad():
                hidden = model(pixel_values=nchw(x)).last_hidden_state
            ref[f"{tag}/images"] = x.astype(np.float16)
            for k, v in pool(hidden, registers).items():
                ref[f"{tag}/{k}"] = v

    # MAE: the pre-training model (vit.* + decoder.*) and a bare encoder (no prefix).
    mae_config = dict(
        TINY,
        intermediate_size=48,
        image_size=32,
        patch_size=8,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    for name, cls in [("mae_pretraining", ViTMAEForPreTraining), ("mae_encoder", ViTMAEModel)]:
        model = cls(ViTMAEConfig(**mae_config))
        model.eval()
        embeddings = (model.vit if name == "mae_pretraining" else model).embeddings
        if not embeddings.position_embeddings.abs().sum():
            # transformers 5 skips the sin-cos fill on random init (the patch projection is
            # flagged initialised first); fill it the way the class itself does.
            embeddings.patch_embeddings.projection._is_hf_initialized = False
            embeddings.initialize_weights()
        assert embeddings.position_embeddings.abs().sum() > 0
        perturb(model, gen)
        save(model, name)
        encoder = model.vit if name == "mae_pretraining" else model
        encoder.config.mask_ratio = 0.0
        x = images(32, rng)
        patches = (32 // 8) ** 2
        noise = torch.arange(patches, dtype=torch.float32).expand(BATCH, patches)
        with torch.no_grad():
            out = encoder(pixel_values=nchw(x), noise=noise)
        assert torch.equal(out.ids_restore, torch.arange(patches).expand(BATCH, patches))
        assert not out.mask.any(), "mask_ratio 0 must keep every patch"
        ref[f"{name}/images"] = x.astype(np.float16)
        for k, v in pool(out.last_hidden_state, 0).items():
            ref[f"{name}/{k}"] = v
        if name == "mae_encoder":
            ref["mae_sincos"] = encoder.embeddings.position_embeddings[0].detach().numpy()

    np.savez_compressed(OUT / "reference.npz", **ref)
    (OUT / "versions.json").write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "seed": args.seed,
            },
            indent=2,
        )
        + "\n"
    )
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()

"""The interface of an encoder family (DINOv2, MAE, CLIP): how to build or load its encoder."""

from __future__ import annotations

from typing import Any

from tgmatl.config import RandomArchParams
from tgmatl.embedding.backbones.base import Encoder, WeightsError


class Family:
    """One encoder family. Subclasses fill in the class attributes and the three loaders."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hf_model_types: tuple[str, ...] = ()
    has_projection = False

    @property
    def preset_names(self) -> tuple[str, ...]:
        """Built-in keras-hub preset names accepted for ``weights``."""
        return ()

    def random_encoder(self, arch: RandomArchParams, image_size: int) -> Encoder:
        """Seeded random initialisation (the caller seeds keras first)."""
        raise NotImplementedError

    def keras_encoder(self, preset: str, image_size: int, key: str) -> Encoder:
        """From a keras-hub preset (a local folder, a built-in name or a handle)."""
        raise NotImplementedError

    def hf_encoder(self, preset: str, config: dict[str, Any], image_size: int, key: str) -> Encoder:
        """From a Hugging Face checkpoint (a local folder or an ``hf://`` handle)."""
        hint = ", ".join(self.hf_model_types) or "none: use a keras-hub preset or preset folder"
        raise WeightsError(
            f"{key}: Hugging Face checkpoints are not supported for family {self.name!r} "
            f"(model types read: {hint})"
        )

    # --- shared checks ----------------------------------------------------------------------
    def check_model_type(self, config: dict[str, Any], key: str, preset: str) -> str:
        model_type = config.get("model_type")
        if model_type not in self.hf_model_types:
            raise WeightsError(
                f"{key}: {preset!r} is a Hugging Face {model_type!r} checkpoint; family "
                f"{self.name!r} reads model types {', '.join(self.hf_model_types)}"
            )
        return model_type

    @staticmethod
    def check_fixed_size(checkpoint_size: int, image_size: int, key: str, preset: str) -> None:
        """Encoders with learnt, non-interpolated positions only run at their trained size."""
        if checkpoint_size != image_size:
            raise WeightsError(
                f"{key.rsplit('.', 1)[0]}.image_size: {image_size}, but {preset!r} is built for "
                f"{checkpoint_size} px (its position embeddings are fixed); set image_size: "
                f"{checkpoint_size}"
            )

    @staticmethod
    def check_patch_multiple(patch: int, image_size: int, key: str, preset: str) -> None:
        if image_size % patch:
            raise WeightsError(
                f"{key.rsplit('.', 1)[0]}.image_size: {image_size} is not a multiple of the "
                f"patch size {patch} of {preset!r}"
            )

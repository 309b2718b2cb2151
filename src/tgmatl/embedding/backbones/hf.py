"""Reading Hugging Face checkpoints (``config.json`` + safetensors) beside keras-hub's converters.

keras-hub's own safetensors loader guesses a key prefix from the first key it finds; a bare
``ViTMAEModel`` (keys ``embeddings.*``) against the ViT converter's ``vit.embeddings.*`` names
defeats that guess. :class:`HFWeights` resolves each key explicitly: the name as asked, then
without the ``vit.`` prefix (bare encoder), then with it.

``preset`` may be a local folder or a ``hf://org/model`` handle; files come through keras-hub's
``get_file``, so a handle downloads (and caches) the same files a folder would hold.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


def _get_file(preset: str, name: str) -> str:
    from keras_hub.src.utils.preset_utils import get_file

    return get_file(preset, name)


def _has_file(preset: str, name: str) -> bool:
    from keras_hub.src.utils.preset_utils import check_file_exists

    return check_file_exists(preset, name)


def read_config(preset: str) -> dict[str, Any]:
    with open(_get_file(preset, CONFIG)) as fh:
        return json.load(fh)


class HFWeights(contextlib.ExitStack):
    """Tensors of a (possibly sharded) safetensors checkpoint, keyed by the names in the file."""

    def __init__(self, preset: str):
        super().__init__()
        from safetensors import safe_open

        if _has_file(preset, SAFETENSORS_INDEX):
            with open(_get_file(preset, SAFETENSORS_INDEX)) as fh:
                files = sorted(set(json.load(fh)["weight_map"].values()))
        else:
            files = [SAFETENSORS]
        self._files = [
            self.enter_context(safe_open(_get_file(preset, f), framework="np")) for f in files
        ]
        self._where = {k: f for f in self._files for k in f.keys()}  # noqa: SIM118
        self.used: set[str] = set()

    def keys(self) -> set[str]:
        return set(self._where)

    def resolve(self, key: str) -> str:
        candidates = [key]
        if key.startswith("vit."):
            candidates.append(key.removeprefix("vit."))
        else:
            candidates.append("vit." + key)
        for cand in candidates:
            if cand in self._where:
                return cand
        raise KeyError(f"checkpoint has no tensor {key!r} (tried {', '.join(candidates)})")

    def get_tensor(self, key: str) -> np.ndarray:
        name = self.resolve(key)
        self.used.add(name)
        return self._where[name].get_tensor(name)

    def port_weight(
        self,
        keras_variable: Any,
        hf_weight_key: str,
        hook_fn: Callable[[np.ndarray, list[int]], np.ndarray] | None = None,
    ) -> None:
        """keras-hub's converter protocol: copy one tensor (through ``hook_fn``) to a variable."""
        tensor = self.get_tensor(hf_weight_key)
        if hook_fn is not None:
            tensor = hook_fn(tensor, list(keras_variable.shape))
        if tuple(tensor.shape) != tuple(keras_variable.shape):
            raise ValueError(
                f"tensor {hf_weight_key!r} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(keras_variable.shape)}"
            )
        keras_variable.assign(tensor)

"""Where ``backbones.<name>.weights`` points, and fetching remote presets without hanging.

Accepted values:
- ``random``: seeded random initialisation at the architecture in ``backbones.<name>.random``
  (untrained; the offline demo).
- a local **keras-hub preset folder** (made by ``backbone.save_to_preset(folder)``):
  ``config.json`` (with ``registered_name``), ``metadata.json``, ``model.weights.h5``.
- a local **Hugging Face checkpoint folder** (``save_pretrained`` / a hub snapshot):
  ``config.json`` (with ``model_type``) and ``model.safetensors`` (or
  ``model.safetensors.index.json`` + shards).
- a **keras-hub preset name** (``dinov2_base``, ``clip_vit_base_patch16``, ...) or a
  ``kaggle://`` / ``hf://`` handle: downloaded (and cached) by keras-hub when online.

A relative folder is relative to the working directory (the repo root under ``dvc repro``).
Nothing falls back: an unreachable preset or a missing folder is a :class:`WeightsError` naming the
key and the accepted layouts.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tgmatl.params import ParamsError


class WeightsError(ParamsError):
    """``backbones.<name>.weights`` names weights that cannot be loaded (missing, offline...).

    Defined here, in a module that does not import Keras, so that weights can be checked
    (:func:`resolve`) before TensorFlow starts (``make paper``)."""

Kind = Literal["random", "keras_folder", "hf_folder", "remote"]

# Fetching a remote preset's config.json must answer within this many seconds (a machine whose
# DNS works but whose traffic is dropped would otherwise wait on retries for minutes).
PROBE_TIMEOUT_S = 30.0

LAYOUTS = (
    "'random'; a keras-hub preset folder (config.json + metadata.json + model.weights.h5, "
    "from save_to_preset); a Hugging Face checkpoint folder (config.json + model.safetensors); "
    "or a keras-hub preset name / kaggle:// / hf:// handle (needs network on first use)"
)


@dataclass(frozen=True)
class WeightsSource:
    kind: Kind
    location: str  # as written in params (a folder, a preset name or a handle)
    config: dict | None = None  # config.json of a local folder

    @property
    def describe(self) -> str:
        return {
            "random": "random (seeded, untrained)",
            "keras_folder": "keras-hub preset folder",
            "hf_folder": "Hugging Face checkpoint folder",
            "remote": "keras-hub preset",
        }[self.kind]


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith((".", "~"))


def resolve(weights: str, key: str, preset_names: tuple[str, ...]) -> WeightsSource:
    """Classify ``weights`` (the value at ``key``) without loading anything heavy."""
    if weights == "random":
        return WeightsSource("random", weights)
    if "://" in weights:
        return WeightsSource("remote", weights)
    path = Path(weights).expanduser()
    if path.is_dir():
        return _local(path, weights, key)
    if weights in preset_names:
        return WeightsSource("remote", weights)
    if _looks_like_path(weights) or path.exists():
        raise WeightsError(
            f"{key}: folder {weights!r} not found (or not a folder). Expected one of: {LAYOUTS}"
        )
    known = ", ".join(preset_names) or "(none)"
    raise WeightsError(
        f"{key}: {weights!r} is neither a folder nor a keras-hub preset of this family "
        f"(known: {known}). Expected one of: {LAYOUTS}"
    )


def _local(path: Path, weights: str, key: str) -> WeightsSource:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise WeightsError(
            f"{key}: folder {weights!r} has no config.json. Expected one of: {LAYOUTS}"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{key}: {config_path} is not readable JSON: {exc}") from None
    if not isinstance(config, dict):
        raise WeightsError(f"{key}: {config_path} is not a JSON object")
    if "registered_name" in config:
        missing = [f for f in ("metadata.json", "model.weights.h5") if not (path / f).is_file()]
        if missing and not list(path.glob("model_*.weights.h5")):
            raise WeightsError(
                f"{key}: keras-hub preset folder {weights!r} lacks {', '.join(missing)} "
                "(write it with backbone.save_to_preset(folder))"
            )
        return WeightsSource("keras_folder", weights, config)
    if "model_type" in config:
        if (
            not (path / "model.safetensors").is_file()
            and not (path / "model.safetensors.index.json").is_file()
        ):
            raise WeightsError(
                f"{key}: Hugging Face folder {weights!r} has no model.safetensors (PyTorch .bin "
                "checkpoints are not read: re-save with save_pretrained(safe_serialization=True))"
            )
        return WeightsSource("hf_folder", weights, config)
    raise WeightsError(
        f"{key}: {config_path} is neither a keras-hub preset config (registered_name) nor a "
        f"Hugging Face config (model_type). Expected one of: {LAYOUTS}"
    )


def fetch_remote_config(source: WeightsSource, key: str, timeout: float | None = None) -> dict:
    """Fetch (or find in the cache) a remote preset's config.json, failing fast when offline.

    The download runs in a daemon thread so a hung connection cannot keep the process alive; any
    failure becomes a :class:`WeightsError` that says how to use the weights offline instead.
    """
    from keras_hub.src.utils.preset_utils import get_file

    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    result: dict = {}

    def target() -> None:
        try:
            result["path"] = get_file(source.location, "config.json")
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            result["error"] = exc

    thread = threading.Thread(target=target, name=f"fetch {source.location}", daemon=True)
    thread.start()
    thread.join(timeout)
    advice = (
        f"Set {key} to a local folder instead: download the preset where there is network "
        f"(keras_hub.models.Backbone.from_preset(...).save_to_preset(folder), or a Hugging Face "
        f"snapshot with config.json + model.safetensors) and copy it here. Accepted: {LAYOUTS}"
    )
    if thread.is_alive():
        raise WeightsError(
            f"{key}: preset {source.location!r} did not answer within {timeout:.0f} s "
            f"(no network?). {advice}"
        )
    if "error" in result:
        exc = result["error"]
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        raise WeightsError(
            f"{key}: cannot fetch preset {source.location!r} ({reason}). {advice}"
        ) from None
    return json.loads(Path(result["path"]).read_text())

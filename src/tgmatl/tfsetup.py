"""Start TensorFlow without its CUDA probing noise on machines that have no NVIDIA GPU.

The TensorFlow wheel looks for CUDA on every start. On a CPU-only machine it prints, even with
``TF_CPP_MIN_LOG_LEVEL=3`` (the first lines come before its log level is read) and even with
``CUDA_VISIBLE_DEVICES=''`` or ``-1`` (measured with TensorFlow 2.21)::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

:func:`start_tensorflow` decides *before* TensorFlow is imported whether a GPU is expected
(:func:`gpu_expected`: an NVIDIA device node ``/dev/nvidia<N>`` exists and ``CUDA_VISIBLE_DEVICES``
does not hide every device). Where none is, it imports TensorFlow and lets it probe its devices
with the process's stderr (file descriptor 2) going to a buffer, then writes the buffer back
without the lines above (:data:`CPU_NOISE`, which also holds the ``oneDNN custom operations are
on`` notice of CPUs where TensorFlow turns oneDNN on); everything else comes through. Where a GPU is
expected nothing is filtered, so a real CUDA error (a driver that does not load, cuInit failing
on a GPU machine) is printed as TensorFlow wrote it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

# Substrings of the lines TensorFlow prints on every start of a machine without an NVIDIA GPU.
CPU_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
    # on CPUs where TensorFlow turns oneDNN on (AVX-512, ...), once per loaded library; it
    # describes last-bit differences between CPU kinds, which the README states instead
    "oneDNN custom operations are on",
)


def nvidia_device_nodes(dev: str = "/dev") -> list[str]:
    """The NVIDIA GPU device nodes (``/dev/nvidia0``, ...) the kernel driver created."""
    return sorted(p for p in glob.glob(os.path.join(dev, "nvidia*"))
                  if os.path.basename(p)[len("nvidia"):].isdigit())


def gpu_expected(dev: str = "/dev", environ: dict[str, str] | None = None) -> bool:
    """Whether TensorFlow may use an NVIDIA GPU here (decided without importing TensorFlow)."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False  # every device hidden on purpose
    return bool(nvidia_device_nodes(dev))


@contextlib.contextmanager
def filtered_stderr(drop: tuple[str, ...] = CPU_NOISE) -> Iterator[None]:
    """Send fd 2 to a buffer for the block (C++ libraries write there directly), then write
    its lines back to stderr, leaving out those containing any of ``drop``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            text = buf.read().decode(errors="replace")
            kept = [ln for ln in text.splitlines(keepends=True) if not any(d in ln for d in drop)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def start_tensorflow() -> ModuleType:
    """Import TensorFlow and initialise its devices (quietly where no GPU is expected).

    Call it in a stage before anything imports TensorFlow; later imports reuse the module and
    TensorFlow does not probe CUDA again. Returns the ``tensorflow`` module.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or gpu_expected():
        import tensorflow as tf

        return tf
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the cuInit probe happens here, inside the filter
    return tf

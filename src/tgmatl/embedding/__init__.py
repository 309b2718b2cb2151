"""Embedding: frozen encoders turn sample images into vectors (stages ``sources``, ``embed``;
``make paper``).

Takes ``data/samples/`` (``samples.parquet`` and the sample PNGs) and one ``backbones.<name>``
section: a keras-hub preset by name, a local preset folder, a Hugging Face checkpoint folder, a
tiny random encoder, or precomputed embeddings (:mod:`~tgmatl.embedding.backbones`,
:mod:`~tgmatl.embedding.precomputed`). Gives ``data/embeddings/<name>.parquet`` (``sample_id``,
``embedding`` as ``fixed_size_list<float32>[D]``; metadata: family, weights, untrained, versions)
from :mod:`~tgmatl.embedding.extraction`, and ``data/sources/<name>.json`` (a precomputed
file's fingerprint). :mod:`~tgmatl.embedding.paper` runs the pipeline with the paper's encoders.
"""

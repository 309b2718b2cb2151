"""Survey: from drone scenes to one image per target (stages ``demo``, ``tile``, ``isolate``).

Takes a survey folder in the AWIR layout (scenes as PNG/GeoTIFF, optional thermal bands,
annotations as Pascal VOC XML, YOLO text or COCO JSON) or generates one (``demo``). Gives:

- ``data/demo/``: the generated demo survey (:mod:`~tgmatl.survey.demo`);
- ``data/tiles/``: fixed-size tiles with their boxes, ``tiles.parquet``
  (:mod:`~tgmatl.survey.annotations` reads, :mod:`~tgmatl.survey.raster` decodes,
  :mod:`~tgmatl.survey.tiling` cuts);
- ``data/samples/``: one sample image per target and ``samples.parquet`` (``sample_id``,
  ``scene_id``, ``image_path``, ``class_name``, ``class_id``, box ``xmin, xmax, ymin, ymax`` in
  sample pixels, ``tile_width``, ``tile_height``, ``bands``), plus ``metrics/data.json``
  (:mod:`~tgmatl.survey.isolate`; :mod:`~tgmatl.survey.samples` reads and checks the table for
  every later phase).
"""

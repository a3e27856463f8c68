"""The raster engine: the grid every input is aligned on, reading and writing rasters, tiling and
stitching, the inference paths, output files and their protection (temporary names, path checks).

One classify call passes through each module once, downward (``tests/test_engine_layout.py``
checks the imports):

* ``classify``: checks the model card, inputs and outputs; opens the inputs once
  (``aligned_inputs.AlignedInputs``: the rasters on the output grid, cut to the extent and the
  mask, and the mask itself) and hands them, with a ``forward.Runner`` for the model file, to the
  path its head kind runs;
* ``head_paths``: the planner of the card's head kind (``core.head_kinds``, asked once): which
  path, and its defaults and checks of tile, overlap and batch;
* ``paths``: ``run_dense`` and ``run_patch`` and the driver that runs either over its threads;
* ``prefetch`` (windows read, normalised and batched ahead), ``forward`` (the network built once,
  its forward pass with out-of-memory back-off, progress inside it), ``tiling`` (tile geometry,
  blending), ``pipeline`` (model workers, the writer stage);
* ``io`` and ``grid`` below them (reading aligned windows), ``outputs`` (the class raster,
  confidence, polygons, written as tiles finish) and its protection (``atomic``, ``output_paths``).
"""

"""Training data: labels (class rasters, polygons, points), benchmark dataset layouts, the
samplers that cut tiles or patches where labels are, the spatial train/validation split, and
the preparation of a training run's scenes (``prepare``: statistics, class indices, split, tile)."""

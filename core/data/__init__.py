"""Training data: labels (class rasters, polygons, points), benchmark dataset layouts, the
samplers that cut tiles or patches where labels are, and the spatial train/validation split."""

"""The raster engine: the grid every input is aligned on, reading and writing rasters, tiling and
stitching, the inference paths, output files and their protection (temporary names, path checks)."""

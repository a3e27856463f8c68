"""The inputs of one classification, opened once: the rasters aligned on the output grid, and
the mask layer that limits which pixels are classified.

:meth:`AlignedInputs.open` opens the rasters on input 1's grid (their band counts and data types
can then be checked against the model), :meth:`AlignedInputs.cut` cuts that grid to an extent
and to the mask's footprint; the inference reader then reads windows through the same handles
(on its own thread, the only one using them while it runs), so no file is opened twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..data.labels import LabelSource
from .grid import Grid
from .io import AlignedReader


@dataclass
class AlignedInputs:
    """Input rasters in the model's order, read through ``reader`` on its output grid (``grid``),
    and the mask (a polygon layer or raster, read as "inside" > 0) when one was given."""

    reader: AlignedReader
    mask: Optional[LabelSource] = None

    @classmethod
    def open(cls, paths: Sequence[str], ratios: Sequence[int]) -> "AlignedInputs":
        """Open ``paths`` on input 1's grid, input i on that grid scaled by ``ratios[i]``
        (InputError/GridError as :class:`.io.AlignedReader`)."""
        return cls(AlignedReader(paths, ratios))

    @property
    def grid(self) -> Grid:
        return self.reader.grid

    @property
    def paths(self) -> list[str]:
        return self.reader.paths

    @property
    def ratios(self) -> list[int]:
        return self.reader.ratios

    def cut(self, extent: Optional[tuple[float, float, float, float]] = None, mask: Optional[str] = None) -> Grid:
        """Cut the output grid to ``extent`` (xmin, ymin, xmax, ymax in its CRS), then to the
        extent of ``mask`` (snapped outward to whole pixels), keep the mask open for reading, and
        place every input on the cut grid again (each must still overlap it), with the row cache
        on for the reader that walks it; returns the cut grid.

        GridError when the mask lies outside the grid or an input outside the cut grid,
        InputError when the mask cannot be read or (vector) holds no polygon.
        """
        grid = self.grid
        if extent is not None:
            grid = grid.cut_to_extent(*extent)
        if mask is not None:
            self.mask = LabelSource(mask, grid.crs_wkt, presence=True)
            self.mask.check_overlap(grid)
            grid = grid.cut_to_extent(*self.mask.bounds)
        self.reader.regrid(grid, row_cache=True)
        return grid

    def close(self) -> None:
        if self.mask is not None:
            self.mask.close()
            self.mask = None
        self.reader.close()

    def __enter__(self) -> "AlignedInputs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

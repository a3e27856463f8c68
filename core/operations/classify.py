"""The spec of *classify*: a land-cover map from one or two rasters with a model file or built-in model."""
from __future__ import annotations

from .shared import CLI_ONLY, PROCESSING_ONLY, device_param
from .spec import CLASS_RASTER, RASTER, TABLE, VECTOR, Operation, Param

CLASSIFY = Operation(
    id="classify",
    name="Classify land cover",
    cli_summary="classify rasters with a model",
    cli_required=("MODEL", "INPUT_1|SCENES", "OUTPUT|OUTPUT_FOLDER"),
    params=(
        Param("MODEL", "file", "Model (built-in or .mmlc file)", default="asanet-demo", widget="model_chooser",
              file_filter="mmlc model files (*.mmlc);;Built-in model name or any file (*)",
              help="A built-in model name (asanet-demo, das2f-demo, prsanet-demo, hfdnet-demo) or the path of an "
                   ".mmlc file from Train or Distill. The panel below the chooser lists the inputs, bands and "
                   "classes the model expects.",
              cli_help="model file (.mmlc) or built-in model name",
              doc="an `.mmlc` model file (from *Train* or *Distill*) or a built-in name: `asanet-demo`, "
                  "`das2f-demo`, `prsanet-demo`, `hfdnet-demo`. In the dialog: a dropdown of the built-ins, a file "
                  "browser, and a panel with what the model needs (inputs with band names in order, data type and "
                  "pixel size, classes with colours, training provenance)",
              doc_default="`asanet-demo` (dialog; required on the command line)", core="model",
              cli_default_note="required on the command line; the dialog preselects the first demo model"),
        Param("INPUT_1", "raster", "Input 1 (see the model's first input)",
              help="The model's first input, bands in the model's order: ASANet optical, DAS2F multispectral, "
                   "PRSANet first modality, HFD-Net SAR. The output has its grid.",
              cli_help="first input raster (defines the output grid)",
              doc="ASANet: optical; DAS2F: multispectral; PRSANet: first modality; HFD-Net: SAR (its only input). "
                  "The dialog leaves it empty (it does not preselect the project's top layer) and reports a band "
                  "count that does not fit the model before running", doc_default="—"),
        Param("INPUT_2", "raster", "Input 2 (the model's second input)", optional=True,
              help="ASANet SAR (dB), DAS2F panchromatic (4x finer), PRSANet second modality; empty for HFD-Net. "
                   "Read on Input 1's grid on the fly (any CRS/resolution).",
              cli_help="second input raster (two-modality models)",
              doc="ASANet: SAR in dB; DAS2F: panchromatic at 4x the MS resolution; PRSANet: second modality; "
                  "HFD-Net: empty", doc_default="none"),
        Param("EXTENT", "extent", "Extent (default: all of Input 1)", optional=True,
              help="Classify only this rectangle, snapped outward to Input 1's pixels.",
              cli_help="xmin,ymin,xmax,ymax in INPUT_1's CRS",
              doc="cut the output to this extent (snapped to Input 1's pixels)", doc_default="all of Input 1",
              core="extent"),
        Param("MASK", "features", "Mask polygons (classify only inside)", optional=True, geometry="polygon",
              help="Only pixels whose centre lies in a polygon are classified (the rest is nodata) and the output "
                   "is cut to the polygons' extent, like Clip raster by mask layer. Any CRS; selections work.",
              cli_help="polygon layer or raster (non-zero = inside): classify only inside, cut to its extent",
              doc="polygon layer (any format and CRS, memory layers and selections too): only pixels whose centre "
                  "a polygon covers are classified, the rest is nodata, and the output is cut to the polygons' "
                  "extent, like *Clip raster by mask layer*. From `python -m mmlc` a raster also works (non-zero "
                  "= inside, read with nearest neighbour)", doc_default="none", core="mask"),
        Param("TILE_SIZE", "int", "Tile size, pixels (0 = the model's)", default=0, minimum=0, advanced=True,
              help="Side of the tiles a segmentation model sees (window side for per-pixel models); 0 keeps the "
                   "model card's (256 for the built-ins). Larger tiles: more context, more memory.",
              cli_help="tile side in pixels (default: the model's)",
              doc="tile side in pixels for segmentation models; 0 = the model's own; cut to the raster, refused "
                  "when its buffers would not fit in memory", doc_default="0", core="tile_size"),
        Param("OVERLAP", "int", "Overlap, pixels (empty = the model's)", optional=True, minimum=0, advanced=True,
              help="Pixels neighbouring tiles share; blended with a smooth ramp so no seams show. Empty keeps the "
                   "model's (32 for the built-ins).",
              cli_help="tile overlap in pixels (dense models)",
              doc="overlap between tiles, blended with a smooth window (no seams)",
              doc_default="the model's (32 for the built-ins)", core="overlap"),
        Param("BATCH_SIZE", "int", "Batch size (0 = the default, 4)", default=4, minimum=0, advanced=True,
              help="Tiles (or units of 256 patches) per forward pass; halved automatically when a GPU runs out of "
                   "memory.",
              cli_help="tiles or patch units per forward pass (0 = the default, 4)",
              doc="tiles (or patch batches) per forward pass; halved automatically on a CUDA out-of-memory error; "
                  "0 = the default", doc_default="4", core="batch_size"),
        device_param(),
        Param("OUTPUT", "output_raster", "Land cover", output=CLASS_RASTER,
              cli_help="output class raster (GeoTIFF)",
              doc="class raster (GeoTIFF: `.tif`/`.tiff`; Byte, or UInt16 beyond 254 classes), nodata 0, colour "
                  "table, category names and a `.qml` sidecar", doc_default="—", core="output"),
        Param("OUTPUT_CONFIDENCE", "output_raster", "Confidence", output=RASTER, optional=True,
              create_by_default=False, cli_help="optional confidence raster",
              doc="optional Float32 raster of the maximum class probability", doc_default="none", core="confidence"),
        Param("OUTPUT_VECTOR", "output_vector", "Land cover polygons", output=VECTOR, geometry="polygon",
              optional=True, create_by_default=False, cli_help="optional polygons of the classes",
              doc="optional GeoPackage (`.gpkg`) of polygons (one per connected region, class value and name)",
              doc_default="none", core="vector"),
        Param("OUTPUT_AREAS", "output_file", "Class areas table", output=TABLE, file_filter="CSV files (*.csv)",
              optional=True, create_by_default=False, surfaces=PROCESSING_ONLY,
              help="CSV of class value, name, colour, pixels, hectares and share; the same table is always in the "
                   "log.",
              doc="optional CSV of the class areas: `value`, `name`, `color`, `pixels`, `hectares`, "
                  "`share_percent`", doc_default="none"),
        Param("SCENES", "string", "Scenes", surfaces=CLI_ONLY,
              cli_help="classify many rasters instead: a scene table (input_1, input_2, name per row) or a glob "
                       "of input-1 rasters; one output per scene in OUTPUT_FOLDER plus a VRT mosaic",
              doc="many rasters instead of `INPUT_1`/`INPUT_2`: a scene table (`input_1`, `input_2`, `name` per "
                  "row) or a glob of input-1 rasters (in the dialog: Processing's batch mode)", doc_default="none"),
        Param("OUTPUT_FOLDER", "string", "Output folder", surfaces=CLI_ONLY,
              cli_help="folder of the per-scene outputs and mosaic.vrt (with SCENES)",
              doc="with `SCENES`: the folder of the per-scene class rasters and `mosaic.vrt`", doc_default="none"),
    ),
)

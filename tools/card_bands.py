"""Put band names and the expected input data into the built-in models' cards (re-runnable).

``python -m mmlc.tools.card_bands`` rewrites ``resources/models/<name>.mmlc`` in place through
:func:`core.modelfiles.cardinfo.rewrite_card`: only the card in the header changes, the weights are copied
byte for byte (their checksum stays valid). Running it again changes nothing. ``make_models``
calls it after building the models, so regenerated cards carry the same information.

What is written, per input (modality) of each built-in model:

* ``band_names`` on the modality (the band order the model was trained with), and
* ``provenance["expected_inputs"]``: one entry per modality with the data type, pixel size and
  a sentence on what the raster holds, taken from the sample data the model was trained on
  (``resources/sample_data/README.md``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "resources" / "models"

S2_BANDS = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
S1_BANDS = ["VV_dB", "VH_dB"]
S2_INPUT = {"data_type": "UInt16", "pixel_size_m": 10.0,
            "description": "Sentinel-2 L2A surface reflectance x 10000 (BigEarthNet), the 20 m bands "
                           "resampled to 10 m, in this band order"}
S1_INPUT = {"data_type": "Float32", "pixel_size_m": 10.0,
            "description": "Sentinel-1 GRD backscatter in dB (VV, VH), on the optical grid"}

#: name -> per modality (in input order): (band names, expected input).
BUILTIN_INPUTS: dict[str, list[tuple[list[str], dict[str, Any]]]] = {
    "asanet-demo": [(S2_BANDS, S2_INPUT), (S1_BANDS, S1_INPUT)],
    "prsanet-demo": [(S2_BANDS, S2_INPUT), (S1_BANDS, S1_INPUT)],
    "hfdnet-demo": [(S1_BANDS, S1_INPUT)],
    "das2f-demo": [
        (["Blue", "Green", "Red", "NIR"],
         {"data_type": "UInt16", "pixel_size_m": 2.0,
          "description": "WorldView-2 multispectral (SpaceNet 6, Rotterdam), digital numbers"}),
        (["PAN"],
         {"data_type": "UInt16", "pixel_size_m": 0.5,
          "description": "WorldView-2 panchromatic at 4x the multispectral resolution, same origin"}),
    ],
}


def annotate(path: Path, inputs: list[tuple[list[str], dict[str, Any]]]) -> bool:
    """Set band names and expected inputs on the card of ``path``; True if the file changed."""
    from ..core.modelfiles.cardinfo import rewrite_card

    def edit(card: Any) -> None:
        if len(card.modalities) != len(inputs):
            raise ValueError(f"{path.name}: {len(card.modalities)} modalities, the table has {len(inputs)}")
        expected = []
        for m, (names, info) in zip(card.modalities, inputs):
            if len(names) != m.bands:
                raise ValueError(f"{path.name}: modality {m.name} has {m.bands} bands, {len(names)} names given")
            m.band_names = list(names)
            expected.append({"modality": m.name, **info})
        card.provenance["expected_inputs"] = expected

    return rewrite_card(path, edit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=MODELS, help="folder of the built-in model files")
    args = ap.parse_args(argv)
    for name, inputs in BUILTIN_INPUTS.items():
        path = args.models / f"{name}.mmlc"
        if not path.is_file():
            print(f"[skip] {path} (not built)")
            continue
        print(f"[{'updated' if annotate(path, inputs) else 'unchanged'}] {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

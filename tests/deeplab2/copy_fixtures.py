"""Copies the deeplab2 reference fixtures into tests/deeplab2/fixtures/ (run by hand, once).

The fixtures were made by running deeplab2's own code (commit 64bc1c1, TF 2.21) on seeded
weights; see docs/model_zoo.md#how-the-conversion-is-verified. To keep the repository light, the
reference outputs are stored on every third row and column (pixel 0 included); inputs, key lists
and metadata are stored whole.

    python tests/deeplab2/copy_fixtures.py /path/to/deeplab2_checkpoints
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

STRIDE = 3  # Spatial subsampling of the stored reference outputs.


def main(src: str) -> None:
    out_root = Path(__file__).parent / "fixtures"
    for folder in sorted(p for p in Path(src).iterdir() if p.is_dir()):
        out = out_root / folder.name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / "keys.tsv", out / "keys.tsv")
        meta = json.loads((folder / "meta.json").read_text())
        meta["stored_output_stride"] = STRIDE
        (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        with np.load(folder / "input.npz") as inputs:
            np.savez_compressed(out / "input.npz", **{k: inputs[k] for k in inputs.files})
        with np.load(folder / "outputs.npz") as outputs:
            sub = {k: outputs[k][:, ::STRIDE, ::STRIDE] for k in outputs.files}
            # Full-size statistics, for tolerances relative to each output's spread.
            for k in outputs.files:
                sub[k + "/std_full"] = np.float64(outputs[k].std())
        np.savez_compressed(out / "outputs.npz", **sub)
        print(out)


if __name__ == "__main__":
    main(sys.argv[1])

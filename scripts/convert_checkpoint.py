"""Convert a deeplab2 checkpoint: `python scripts/convert_checkpoint.py --deeplab2 CKPT
--config configs/<name>.py --workdir runs/NAME`.

Thin wrapper around `vipdl.cli.convert_checkpoint` (the `vipdl-convert-checkpoint` console
script); see its docstring and docs/model_zoo.md.
"""

import os
import sys

# Lets `configs/*.py` import `configs.common` when run from a checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vipdl.cli.convert_checkpoint import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

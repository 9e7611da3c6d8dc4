"""Train or resume: `python scripts/train.py --config=configs/synthetic.py --workdir=DIR`.

Thin wrapper around `vipdl.cli.train` (the `vipdl-train` console script); see its docstring.
"""

import os
import sys

# Lets `configs/*.py` import `configs.common` when run from a checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vipdl.cli.train import main  # noqa: E402

if __name__ == "__main__":
    main()

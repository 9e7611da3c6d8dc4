"""Train or resume: `python scripts/train.py --config=configs/synthetic.py --workdir=DIR`.

Thin wrapper around `vipdl.cli.train` (the `vipdl-train` console script); see its docstring.
"""

from vipdl.cli.train import main

if __name__ == "__main__":
    main()

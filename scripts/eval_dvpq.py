from vipdl.cli.eval_dvpq import main

if __name__ == "__main__":
    raise SystemExit(main())

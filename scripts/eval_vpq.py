from vipdl.cli.eval_vpq import main

if __name__ == "__main__":
    raise SystemExit(main())

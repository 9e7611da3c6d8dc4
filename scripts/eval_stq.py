from vipdl.cli.eval_stq import main

if __name__ == "__main__":
    raise SystemExit(main())

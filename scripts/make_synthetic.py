from vipdl.cli.make_synthetic import main

if __name__ == "__main__":
    raise SystemExit(main())

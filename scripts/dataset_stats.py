from vipdl.cli.dataset_stats import main

if __name__ == "__main__":
    raise SystemExit(main())

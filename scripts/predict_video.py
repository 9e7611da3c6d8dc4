from vipdl.cli.predict_video import main

if __name__ == "__main__":
    raise SystemExit(main())

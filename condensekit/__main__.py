"""``python -m condensekit`` (what torchrun launches on every rank)."""

from condensekit.cli.app import main

if __name__ == "__main__":
    main()

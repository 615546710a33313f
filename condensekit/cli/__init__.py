"""The command-line layer: parsing and rendering only; every decision lives in the library."""

"""Process-wide CLI state: the raw arguments (for re-launching under torchrun) and --debug."""

argv: list[str] = []
debug: bool = False

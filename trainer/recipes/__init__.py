"""Named training recipes (``biovita-train ... --recipe NAME``): ``NAME.toml`` in this folder."""

"""hfgate jobs: read the token at submit time, check it against the Hub, launch training. No provider imports."""

"""Entry point of `python -m core`; the commands live in core/cli.py."""

import sys

if __name__ == "__main__":
    from core.cli import main

    sys.exit(main())

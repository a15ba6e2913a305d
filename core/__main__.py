"""Entry point of `python -m core`; the commands live in the core/cli/ package."""

import sys

if __name__ == "__main__":
    from core.cli import main

    sys.exit(main())

"""Entry point of `python -m core`; the commands live in the core/cli/ package."""

if __name__ == "__main__":
    from core.cli import main
    from core.processes import exit_process

    exit_process(main())

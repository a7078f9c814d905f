"""``python -m clamp2_engine``: the same as the ``clamp2-engine`` command."""

from clamp2_engine.cli import main

if __name__ == "__main__":
    main()

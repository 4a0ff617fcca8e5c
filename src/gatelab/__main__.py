"""``python -m gatelab``: the same as the ``gatelab`` command."""

from .cli import main

if __name__ == "__main__":
    main()

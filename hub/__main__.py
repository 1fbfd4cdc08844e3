"""``python -m hub`` is the ``hub`` command."""

from hub.cli import main

if __name__ == "__main__":
    main()

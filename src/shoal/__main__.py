"""``python -m shoal`` is the ``shoal`` command."""

from .cli import main

if __name__ == "__main__":
    main()

"""``python -m fbp``: the same as the ``fbp`` command (handy under ``torchrun``)."""

from .cli import main

if __name__ == "__main__":
    main()

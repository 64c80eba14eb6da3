"""``python -m thinc_losses_plus``: the ``thinc-losses`` command line."""
import sys

from .cli import main

if __name__ == "__main__":  # not when a doctest collector imports this module
    sys.exit(main())

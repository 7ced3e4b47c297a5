"""``python -m tests.fuzz.passes``: see :mod:`tests.fuzz.passes.run`."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    from .run import main

    sys.exit(main())

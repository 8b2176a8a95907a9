"""``python -m farside``: the same as the ``farside`` command."""

import sys

from ._cli import main

sys.exit(main())

"""``python -m farside_gateway``: the same as ``farside gateway``."""

import sys

from .cli import gateway_main

sys.exit(gateway_main())

"""``python -m farside_gateway.docgen``."""

import sys

from . import main

sys.exit(main())

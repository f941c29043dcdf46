"""``python -m space.describe FILE [FILE...]``."""

import sys

from space.describe import main

sys.exit(main())

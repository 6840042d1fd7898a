"""`python -m mnistctl`."""

import sys

from mnistctl.cli import main

sys.exit(main())

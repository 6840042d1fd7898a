"""`python -m scripts.local_runner ...` (run from the repository root)."""

import sys

from scripts.local_runner.cli import main

sys.exit(main())

"""`python -m scripts.chart_docs [--check]`: see scripts/chart_docs/__init__.py."""

import sys

from scripts.chart_docs import main

sys.exit(main())

"""`python -m stylefinder.cli ...`: the same as the `stylefinder` command."""

import sys

from stylefinder.cli import main

sys.exit(main())

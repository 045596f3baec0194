"""`python -m rasd_bench`: the rasd-bench command."""

import sys

from .cli import main

sys.exit(main())

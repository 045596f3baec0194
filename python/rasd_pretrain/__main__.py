"""`python -m rasd_pretrain` (also what `torchrun -m rasd_pretrain` runs)."""

import sys

from .cli import main

sys.exit(main())

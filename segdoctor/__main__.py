"""``python -m segdoctor``."""

import sys

from segdoctor.cli import main

sys.exit(main())

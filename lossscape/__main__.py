"""`python -m lossscape`: the `lossscape` command (lossscape.cli)."""
import sys

from .cli import main

sys.exit(main())

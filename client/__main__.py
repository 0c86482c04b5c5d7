"""`python -m client ...` works like the `catdog` script."""

import sys

from client.cli import main

sys.exit(main())

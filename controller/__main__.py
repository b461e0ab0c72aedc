"""`python -m controller` is `cloudrun-reconciler`."""

import sys

from controller.cli import main

sys.exit(main())

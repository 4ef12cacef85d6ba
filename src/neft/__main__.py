"""``python -m neft`` (also under ``torchrun``) runs the command line."""

import sys

from neft.cli.main import main

sys.exit(main())

"""`python -m mindcore ...` = the `mindcore` command."""
import sys

from .cli import main

sys.exit(main())

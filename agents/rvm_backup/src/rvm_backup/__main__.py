"""`python3 -m rvm_backup` runs the CLI (the zipapp's own entry point calls rvm_backup.cli:main too)."""

import sys

from rvm_backup.cli import main

sys.exit(main())

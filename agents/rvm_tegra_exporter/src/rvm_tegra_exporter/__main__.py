"""``python -m rvm_tegra_exporter``."""

import sys

from .cli import main

sys.exit(main())

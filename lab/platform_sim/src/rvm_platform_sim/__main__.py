"""``python -m rvm_platform_sim``: the same entry point as the ``rvm-platform-sim`` script."""

from rvm_platform_sim.cli import main

raise SystemExit(main())

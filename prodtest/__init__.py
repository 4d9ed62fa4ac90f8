"""Production tests of the lab fleet (``make prodtest``): load and faults, measured, with a report.

Why a suite of its own instead of more fleet tests: the fleet tests check behaviour (pass/fail, in
CI); this suite measures figures against the seed's targets, keeps the raw data and the previous
run's figures, and takes minutes to hours depending on ``PRODTEST_PROFILE``.
"""

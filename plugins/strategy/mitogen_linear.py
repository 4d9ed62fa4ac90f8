"""The ``mitogen_linear`` strategy, from the mitogen package in the control venv.

Why: a converge of the fleet is thousands of small module runs; mitogen keeps one Python interpreter
per host over the connection and caches the modules' code there, instead of starting a new
interpreter and re-sending each module for every task. ansible.cfg names this strategy; the real
implementation stays in the ``ansible_mitogen`` package (pinned in requirements/control.txt), and this
file only lets Ansible find it by name from the project's own plugin path (no path into a venv).
``ANSIBLE_STRATEGY=linear`` runs any playbook without it.
"""

from __future__ import annotations

import ansible_mitogen.loaders
import ansible_mitogen.strategy

_Linear = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Linear):  # type: ignore[misc,valid-type]
    """Ansible's linear strategy with mitogen's connection and module runner underneath."""

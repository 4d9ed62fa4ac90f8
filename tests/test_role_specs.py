"""Every role documents exactly the variables it lets users set (STYLE: three tiers of variables).

A variable in defaults/main.yml that argument_specs does not know is unvalidated input; one in the
spec that defaults/main.yml lacks is documented but silently undefined. Both are bugs an operator
would hit, so this check keeps the two files equal, names and default values alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_an_argument_spec() -> None:
    roles = sorted(p.name for p in ROOT.glob("roles/*") if p.is_dir())
    with_specs = sorted(r.name for r in ROLES)
    assert roles, "no roles found"
    assert roles == with_specs, "roles without meta/argument_specs.yml"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role: Path) -> None:
    defaults = load(role / "defaults" / "main.yml")
    options = load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), (
        f"{role.name}: defaults and argument_specs list different variables"
    )
    for name, spec in options.items():
        assert spec.get("description"), f"{role.name}: {name} has no description"
        assert "default" in spec, f"{role.name}: {name} has no default in argument_specs"
        assert spec["default"] == defaults[name], (
            f"{role.name}: default of {name} differs between the two files"
        )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_carry_the_role_prefix(role: Path) -> None:
    defaults = load(role / "defaults" / "main.yml")
    internal = load(role / "vars" / "main.yml") if (role / "vars" / "main.yml").exists() else {}
    assert all(name.startswith(f"{role.name}_") for name in defaults), (
        f"{role.name}: public variable without prefix"
    )
    assert all(name.startswith(f"_{role.name}_") for name in internal), (
        f"{role.name}: internal constant without _prefix"
    )

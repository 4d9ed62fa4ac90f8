"""Prometheus text exposition (format 0.0.4) for a handful of gauges.

The exporter is standard library only (it ships as one zipapp), so it renders the few lines it
needs itself instead of pulling in prometheus_client: HELP/TYPE per family, escaped label values,
families without samples left out entirely.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


@dataclass
class Gauge:
    """One metric family: its samples are (labels, value) pairs."""

    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        """Record one sample."""
        self.samples.append((labels, value))

    def render(self) -> str:
        """The family's lines, or an empty string when it has no samples."""
        if not self.samples:
            return ""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for labels, value in self.samples:
            label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels.items())
            lines.append(
                f"{self.name}{{{label_text}}} {_number(value)}" if labels else f"{self.name} {_number(value)}"
            )
        return "\n".join(lines) + "\n"


def render(families: list[Gauge]) -> str:
    """All families with samples, in the order given."""
    return "".join(family.render() for family in families)

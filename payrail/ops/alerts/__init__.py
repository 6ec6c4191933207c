"""Prometheus alert and recording rules for payrail (docs/alerts.md explains each alert).

Load them into Prometheus with `rule_files:`; `rule_files()` says where they are installed.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def rule_files() -> list[Path]:
    """Every rules file shipped with payrail."""
    return sorted(HERE.glob("*.rules.yml"))

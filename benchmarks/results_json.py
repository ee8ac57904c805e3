"""Where and how the benchmarks write their figures: one JSON file each under docs/results/,
from which scripts/render_figures.py renders the README's tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"


def default_path(name: str) -> str:
    """The JSON a benchmark writes unless told otherwise."""
    return str(RESULTS / f"{name}.json")


def measured() -> dict[str, str]:
    """When and on what a figure was measured."""
    return {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores"}


def write(path: str, record: dict[str, Any]) -> None:
    """Write ``record`` with its ``measured`` stamp to ``path`` ('' writes nothing)."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"measured": measured(), **record}, indent=1) + "\n")
    print(f"wrote {path}")

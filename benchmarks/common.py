"""What every benchmark result records: the command, the machine and the package versions."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def environment(*packages: str) -> dict:
    """The command that ran, the machine it ran on, and the versions of `packages`."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(),
        },
        "versions": {p: metadata.version(p) for p in ("stylefinder", *packages)},
    }


def save(path: str | Path, result: dict) -> None:
    """Write a result as indented JSON, creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")

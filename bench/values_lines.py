"""How much a user writes per server: the lines and leaf values under `ovms:` and `triton:` in each example
values file (examples/values/*.yaml), and what the rest of the file sets (shared: global, minio, packager,
monitoring...). Counts YAML lines that are neither blank nor comments, and leaf values (a list item counts
once per leaf). Not a test: a figure for docs/comparison.md.

    .venv/bin/python bench/values_lines.py [FILE...]     (default: every examples/values/*.yaml)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("ovms", "triton")


def leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values()) or 1
    if isinstance(value, list):
        return sum(leaves(v) for v in value) or 1
    return 1


def lines_by_top_key(text: str) -> dict[str, int]:
    """Non-blank, non-comment lines of each top-level key's block."""
    counts: dict[str, int] = {}
    key = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace():
            key = line.split(":", 1)[0]
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return counts


def figures(path: Path) -> dict[str, tuple[int, int]]:
    """top-level group (ovms, triton, shared) -> (lines, leaf values)."""
    text = path.read_text()
    values = yaml.safe_load(text) or {}
    lines = lines_by_top_key(text)
    found = {
        server: (lines.get(server, 0), leaves(values[server]) if server in values else 0)
        for server in SERVERS
    }
    shared = [k for k in values if k not in SERVERS]
    found["shared"] = (sum(lines.get(k, 0) for k in shared), sum(leaves(values[k]) for k in shared))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or sorted((ROOT / "examples" / "values").glob("*.yaml"))
    print("| example | ovms lines (values) | triton lines (values) | shared lines (values) |")
    print("| --- | ---: | ---: | ---: |")
    for path in files:
        found = figures(path)
        cells = " | ".join(f"{found[g][0]} ({found[g][1]})" for g in (*SERVERS, "shared"))
        print(f"| {path.name} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

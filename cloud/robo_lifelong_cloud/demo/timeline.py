"""Reading the observer's ``timeline.jsonl`` (see ``robo_lifelong.nodes.observer_node``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TIMELINE = 'timeline.jsonl'


def read_timeline(directory: Path) -> list[dict[str, Any]]:
    """Every complete record so far (a line still being written is skipped)."""
    path = directory / TIMELINE
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def of(records: list[dict[str, Any]], topic: str) -> list[dict[str, Any]]:
    return [r for r in records if r['topic'] == topic]


def model_version(records: list[dict[str, Any]]) -> str | None:
    versions = of(records, 'model/version')
    return versions[-1]['data'] if versions else None


def upload_backlog(records: list[dict[str, Any]]) -> int | None:
    """Samples still in the robot's spool, from the newest bridge status."""
    status = [r['data'] for r in of(records, 'bridge/status') if isinstance(r['data'], dict)]
    return status[-1]['backlog']['count'] if status else None

"""The controller's state directory: the job and Dataset as CR-shaped YAML, plus the LC's state.

``<state>/lifelonglearningjob.yaml``: the LifelongLearningJob as ``kubectl get -o yaml`` would
show it (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``); ``<state>/dataset.yaml``
the Dataset with ``status.numberOfSamples``; ``<state>/lc-state.json`` what Sedna's LC keeps in
its database (round counter, sample counters). Every file is replaced atomically (temp file,
fsync, rename), so a reader never sees half a file and a restart resumes from the last write.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from robo_lifelong.errors import ConfigError

JOB_FILE = 'lifelonglearningjob.yaml'
DATASET_FILE = 'dataset.yaml'
LC_STATE_FILE = 'lc-state.json'
LOG_DIR = 'logs'


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def dump_yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


class StateDir:
    """Reads and writes the files of one state directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def log_dir(self) -> Path:
        return self.root / LOG_DIR

    def _read(self, name: str) -> Any:
        path = self.root / name
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding='utf-8')
            return json.loads(text) if name.endswith('.json') else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise ConfigError(f'state file {str(path)!r} is unreadable: {e}') from e

    def read_job(self) -> dict[str, Any] | None:
        return self._read(JOB_FILE)

    def read_dataset(self) -> dict[str, Any] | None:
        return self._read(DATASET_FILE)

    def read_lc_state(self) -> dict[str, Any] | None:
        return self._read(LC_STATE_FILE)

    def write(self, job: dict[str, Any], dataset: dict[str, Any], lc: dict[str, Any]) -> None:
        atomic_write(self.root / LC_STATE_FILE, json.dumps(lc, indent=1) + '\n')
        atomic_write(self.root / DATASET_FILE, dump_yaml(dataset))
        # the job file last: it is what `status` reads, and the state it shows is then complete
        atomic_write(self.root / JOB_FILE, dump_yaml(job))


def _age(created: str | None, now: datetime) -> str:
    """kubectl's short age (``45s``, ``12m``, ``3h``, ``2d``)."""
    if not created:
        return '<unknown>'
    start = datetime.strptime(created, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=timezone.utc)
    seconds = max(0, int((now - start).total_seconds()))
    for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
        if seconds >= size:
            return f'{seconds // size}{unit}'
    return f'{seconds}s'


def table(job: dict[str, Any], now: datetime | None = None) -> str:
    """``kubectl get lifelonglearningjob``-style rows: NAME AGE STAGE STATUS."""
    now = now or datetime.now(timezone.utc)
    conditions = (job.get('status') or {}).get('conditions') or []
    stage, type_ = (
        (conditions[-1]['stage'], conditions[-1]['type']) if conditions else ('<none>', '<none>')
    )
    rows = [
        ('NAME', 'AGE', 'STAGE', 'STATUS'),
        (
            job['metadata']['name'],
            _age(job['metadata'].get('creationTimestamp'), now),
            stage,
            type_,
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ['   '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return '\n'.join(line.rstrip() for line in lines)

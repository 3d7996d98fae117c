"""The manifest files: plain YAML for kubectl, created mode 0600 (the Secret holds the S3 keys)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

# YAML 1.1 readers take an unquoted 24:00 for the base-60 integer 1440; HH:MM is always quoted.
_CLOCK = re.compile(r'\d+:\d+')


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors/aliases, clock times quoted."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "'" if _CLOCK.fullmatch(value) else None
    return dumper.represent_scalar('tag:yaml.org,2002:str', value, style=style)


_Dumper.add_representer(str, _represent_str)


def write_manifests(manifests: Mapping[str, dict], out: Path, rendered_by: str) -> list[Path]:
    """Write each ``file name -> object`` into ``out``; the header names ``rendered_by``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in manifests.items():
        path = out / name
        text = f'# Rendered by {rendered_by}; apply with: kubectl apply -f {out}\n' + yaml.dump(
            obj, Dumper=_Dumper, sort_keys=False
        )
        # 0600 from creation on: the Secret file holds the S3 keys.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        written.append(path)
    return written

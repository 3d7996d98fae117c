"""The LC's sample bookkeeping and the round files it writes (PROTOCOL.md §2.1, §2.2, §2.4).

``SampleState`` is what Sedna's LC keeps in its database: the line count seen so far, the pending
train list, the retained eval batches and the (ever-growing) eval list. ``split`` is the
positional train/eval split of the new lines; ``write_round`` writes
``O/data/{train,eval}/r/data.txt`` (+ ``dataIndex.txt`` for S3 txt datasets).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robo_lifelong.transfer.storage import S3Config, join, open_storage, parent_of

MAX_EVAL_BATCHES = 5


def count_lines(data: bytes) -> list[str]:
    """Lines as the LC counts them: every line, blank and ``#`` ones too; a last line without
    a newline counts; the csv header is not dropped here (see ``sample_lines``)."""
    text = data.decode('utf-8', 'replace')
    return text.splitlines() if text else []


def sample_lines(data: bytes, fmt: str) -> tuple[list[str], str | None]:
    """``(sample lines, csv header or None)`` of a dataset index file."""
    lines = count_lines(data)
    if fmt.lower() == 'csv' and lines:
        return lines[1:], lines[0]
    return lines, None


def url_prefix(dataset_url: str) -> str:
    """Directory of the dataset URL with the trailing ``/`` (LC's URLPrefix)."""
    return parent_of(dataset_url) + '/'


def index_tokens(lines: Sequence[str]) -> list[str]:
    """Tokens with a file extension, split on single spaces as LC does (§3.2)."""
    return [token for line in lines for token in line.split(' ') if posixpath.splitext(token)[1]]


@dataclass
class SampleState:
    """LC per-job sample counters; JSON round-trips through ``to_dict``/``from_dict``."""

    seen: int = 0  # line count at the last split
    train: list[str] = field(default_factory=list)
    eval_batches: list[list[str]] = field(default_factory=list)
    eval_list: list[str] = field(default_factory=list)

    def split(self, lines: Sequence[str], train_prob: float) -> int:
        """Take lines ``[seen, len(lines))`` as new; returns how many. A shrunk file is ignored."""
        new = list(lines[self.seen :])
        if not new:
            return 0
        k = math.floor(train_prob * len(new))
        self.train.extend(new[:k])
        batch = new[k:]
        if batch:
            self.eval_batches.append(batch)
            for retained in self.eval_batches:
                self.eval_list.extend(retained)
        self.seen = len(lines)
        return len(new)

    def take_train(self) -> list[str]:
        lines, self.train = self.train, []
        return lines

    def after_eval_trigger(self) -> None:
        if len(self.eval_batches) > MAX_EVAL_BATCHES:
            self.eval_batches.pop(0)

    def to_dict(self) -> dict[str, Any]:
        return {
            'seen': self.seen,
            'train': self.train,
            'evalBatches': self.eval_batches,
            'evalList': self.eval_list,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleState:
        return cls(
            seen=int(data.get('seen', 0)),
            train=list(data.get('train', [])),
            eval_batches=[list(b) for b in data.get('evalBatches', [])],
            eval_list=list(data.get('evalList', [])),
        )


def write_round(
    output_dir: str,
    kind: str,
    round_: int,
    lines: Sequence[str],
    dataset_url: str,
    fmt: str,
    header: str | None,
    s3: S3Config,
) -> tuple[str, str]:
    """Write the round's list under ``O/data/<kind>/<r>/``; returns ``(dataURL, dataIndexURL)``.

    ``dataIndexURL`` is ``''`` unless the dataset is on S3 and in txt format.
    """
    store = open_storage(join(output_dir, 'data', kind, str(round_)), s3)
    csv = fmt.lower() == 'csv'
    body = ([header] if csv and header is not None else []) + list(lines)
    name = 'data.csv' if csv else 'data.txt'
    store.write_bytes(name, ''.join(line + '\n' for line in body).encode('utf-8'))
    index_url = ''
    if dataset_url.startswith('s3://') and not csv:
        index = [url_prefix(dataset_url), *index_tokens(lines)]
        store.write_bytes('dataIndex.txt', ''.join(t + '\n' for t in index).encode('utf-8'))
        index_url = store.url_for('dataIndex.txt')
    return store.url_for(name), index_url

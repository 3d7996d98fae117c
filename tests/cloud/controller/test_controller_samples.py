"""LC sample counting, the positional train/eval split and the round files (PROTOCOL.md §2)."""

from __future__ import annotations

from pathlib import Path

from robo_lifelong.transfer.storage import S3Config
from robo_lifelong_cloud.controller.samples import (
    MAX_EVAL_BATCHES,
    SampleState,
    index_tokens,
    sample_lines,
    write_round,
)


def test_every_line_counts() -> None:
    data = b'a.png b.png\n\n# comment\nc.png d.png'
    lines, header = sample_lines(data, 'txt')
    assert len(lines) == 4 and header is None  # blank, comment and unterminated last line count
    assert sample_lines(b'', 'txt') == ([], None)
    lines, header = sample_lines(b'x,y\n1,2\n3,4\n', 'CSV')
    assert (lines, header) == (['1,2', '3,4'], 'x,y')


def test_split_is_positional_and_eval_batches_are_reappended() -> None:
    state = SampleState()
    lines = [f'l{i}' for i in range(10)]
    assert state.split(lines, 0.8) == 10
    assert state.train == [f'l{i}' for i in range(8)]
    assert state.eval_batches == [['l8', 'l9']] and state.eval_list == ['l8', 'l9']
    assert state.split(lines, 0.8) == 0  # nothing new
    assert state.split(lines[:5], 0.8) == 0  # a shrinking file is ignored
    more = lines + ['l10', 'l11', 'l12']
    assert state.split(more, 0.5) == 3  # floor(1.5) = 1 train line
    assert state.train[-1] == 'l10'
    assert state.eval_list == ['l8', 'l9', 'l8', 'l9', 'l11', 'l12']
    assert state.take_train() == [f'l{i}' for i in range(8)] + ['l10']
    assert state.train == []
    assert SampleState.from_dict(state.to_dict()) == state


def test_at_most_five_eval_batches_are_retained_after_an_eval_trigger() -> None:
    state = SampleState()
    lines: list[str] = []
    for i in range(MAX_EVAL_BATCHES + 2):
        lines.append(f'e{i}')
        state.split(lines, 0.0)
    assert len(state.eval_batches) == MAX_EVAL_BATCHES + 2
    state.after_eval_trigger()
    assert len(state.eval_batches) == MAX_EVAL_BATCHES + 1
    assert state.eval_batches[0] == ['e1']


def test_round_files_host_dataset(tmp_path: Path) -> None:
    lines = ['a/rgb/1.png a/label/1.png', 'a/rgb/2.png a/label/2.png']
    data_url, index_url = write_round(
        str(tmp_path / 'out'), 'train', 3, lines, '/data/set/data.txt', 'txt', None, S3Config()
    )
    assert data_url == str(tmp_path / 'out/data/train/3/data.txt') and index_url == ''
    assert Path(data_url).read_text() == ''.join(line + '\n' for line in lines)


def test_round_files_s3_dataset_get_a_data_index(tmp_path: Path) -> None:
    lines = ['a/rgb/1.png a/depth/1.png a/label/1.png', 'noext token\tb/x.png']
    _, index_url = write_round(
        str(tmp_path), 'eval', 1, lines, 's3://bucket/robo/data.txt', 'txt', None, S3Config()
    )
    assert index_url == str(tmp_path / 'data/eval/1/dataIndex.txt')
    assert Path(index_url).read_text().splitlines() == [
        's3://bucket/robo/',
        'a/rgb/1.png',
        'a/depth/1.png',
        'a/label/1.png',
        'token\tb/x.png',  # LC splits on single spaces only
    ]
    assert index_tokens(['x.png y']) == ['x.png']


def test_csv_rounds_keep_the_header(tmp_path: Path) -> None:
    data_url, _ = write_round(
        str(tmp_path), 'train', 1, ['1,2'], '/d/data.csv', 'csv', 'x,y', S3Config()
    )
    assert data_url.endswith('data.csv') and Path(data_url).read_text() == 'x,y\n1,2\n'

"""Replay of a recorded live drive gives what the live perception node gave on the same frames.

Sim camera -> perception node in subprocesses, with tests/ros/drive_recorder.py recording the
camera frames the node processed (it hears the camera before the node starts, so it has them
all) (their stamps come back on ``segmentation/labels``) as sqlite3
and MCAP bags, plus the node's alarms and ``unseen/sample`` events. Both bags are then replayed
with the node's settings. The live node runs its alarm and rate limit on its own clock and the
replay on the stamps, so the collection rate limit is off here (0 s) to make the collected set
depend on the frames only; the alarm enters and exits by frame counts, which do not depend on
the clock at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from robo_lifelong.offline.replay import replay_bag
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.pipeline import PipelineConfig
from robo_lifelong.transfer.spool import Spool
from tests.ros.model_fixture import HEIGHT, WIDTH, cached_package
from tests.ros.node_process import REPO, NodeProcess, ros_environ

pytestmark = pytest.mark.ros

RECORDER = Path(__file__).with_name('drive_recorder.py')
PARAMS_FILE = REPO / 'ros2_ws/src/robo_lifelong/config/perception.yaml'
# The node starts some seconds into the route (after the recorder hears the camera and the model
# loads; more on a loaded machine), wherever that is: the route repeats every 25 s of route time,
# so a node that missed the first snow stretch gets the next. The recorder stops 1 s after the
# alarm is back to OK from ERROR, 12 s of sunny route before the next snow.
SCHEDULE = 'sunny:10,snow:3,sunny:12'
TIMEOUT_S = 240.0  # a bound for a broken node, not a window: the recorder stops on the events
ALARM = {'warn_enter_frames': 2, 'error_enter_frames': 5, 'exit_frames': 5}
STALE = int(AlarmLevel.STALE)


def collapsed(levels: list[int]) -> list[int]:
    """Levels in order with repeats and STALE (before the first frame) left out."""
    out: list[int] = []
    for level in levels:
        if level != STALE and (not out or out[-1] != level):
            out.append(level)
    return out


@pytest.fixture(scope='module')
def drive(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    """(what the recorder heard, bag directory, model package path)"""
    package = cached_package(tmp_path_factory.getbasetemp() / 'perception-model')
    tmp = tmp_path_factory.mktemp('replay-vs-live')
    env = ros_environ()
    camera = NodeProcess.python_module(
        'robo_lifelong.nodes.sim_camera_node',
        ['-p', 'rate_hz:=10.0', '-p', f'schedule:={SCHEDULE}',
         '-p', f'width:={WIDTH}', '-p', f'height:={HEIGHT}'],
        env,
        tmp,
    )  # fmt: skip
    recorder = node = None
    try:
        recorder = NodeProcess(
            [sys.executable, str(RECORDER), '--out', str(tmp / 'bags'),
             '--timeout', str(TIMEOUT_S)],
            env,
            tmp,
            'drive_recorder',
        )  # fmt: skip
        recorder.wait_for_output('camera heard', timeout=120)
        node = NodeProcess.python_module(
            'robo_lifelong.nodes.perception_node',
            [
                '--params-file', str(PARAMS_FILE),
                '-p', f'model_path:={package.path}',
                '-p', f'spool_dir:={tmp / "spool"}',
                '-p', 'threads:=1',
                '-p', 'collect_min_interval_s:=0.0',
                *[a for k, v in ALARM.items() for a in ('-p', f'alarm_{k}:={v}')],
            ],
            env,
            tmp,
        )  # fmt: skip
        code = recorder.proc.wait(timeout=TIMEOUT_S + 120)
        assert code == 0, recorder.output
    finally:
        for p in (camera, node, recorder):
            if p is not None:
                p.kill()
    heard = json.loads(recorder.stdout_path.read_text())
    return heard, tmp / 'bags', package.path


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_replay_of_the_recorded_frames_matches_the_live_node(
    drive: tuple[dict, Path, Path], storage: str, tmp_path: Path
) -> None:
    heard, bags, model = drive
    assert heard['missing'] == [], 'the recorder lost frames the node processed'
    assert heard['samples_announced'], 'the node never accounted for its samples'
    live_levels = collapsed([a['level'] for a in heard['alarm']])
    # snow: up to ERROR and back to OK (the tiny model may also WARN briefly on sunny frames)
    assert 2 in live_levels and live_levels[-1] == 0, live_levels
    config = PipelineConfig(
        alarm=AlarmConfig(**ALARM), collection=CollectionConfig(min_interval_s=0.0)
    )
    with Spool(tmp_path / 'spool', 10**9, 10**4) as spool:
        summary = replay_bag(bags / storage, model, spool=spool, pipeline=config, threads=1)
    assert summary.frames == len(heard['labels'])
    assert collapsed([int(a.level) for a in summary.alarms]) == live_levels
    assert len(summary.samples) == len(heard['samples']) > 0
    assert [e['stamp'] for e in summary.samples] == [e['stamp'] for e in heard['samples']]

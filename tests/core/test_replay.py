"""Offline replay of simulator-recorded bags through the perception core (no ROS).

The route is sunny -> snow -> sunny at 10 Hz, 120x212, recorded once as sqlite3 and once as
MCAP. The shared tiny model package (tests/ros/model_fixture.py) scores the route's snow far above
its threshold and its sunny frames below it (checked first, with margins, so a weak package fails
as such and not as a replay bug), so the alarm goes OK -> WARN -> ERROR -> OK and samples are
collected on the way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.errors import BagError
from robo_lifelong.io.bags import COLOR_TOPIC, DEPTH_TOPIC, BagWriter, header, image
from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.offline.cli import main as cli_main
from robo_lifelong.offline.replay import ReplayConfig, ReplaySummary, open_bag, replay_bag
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel
from robo_lifelong.perception.collection import CollectionConfig
from robo_lifelong.perception.frame_input import Issue
from robo_lifelong.perception.pipeline import FrameResult, Pipeline, PipelineConfig
from robo_lifelong.perception.runner import FrameCounts, FrameRunner
from robo_lifelong.perception.sample_writer import SampleWriter
from robo_lifelong.sim.bag import (
    COLOR_INFO_TOPIC,
    TASK_TOPIC,
    RecordConfig,
    record_route,
)
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.cli import main as sim_main
from robo_lifelong.sim.route import Route, parse_schedule
from robo_lifelong.transfer.spool import Spool
from tests.ros.model_fixture import HEIGHT, WIDTH, cached_package

SCHEDULE = 'sunny:3,snow:3,sunny:4'
RATE = 10.0
SECONDS = 10.0
START_NS = 1_700_000_000_000_000_000
CAMERA = CameraModel(WIDTH, HEIGHT)
CONFIG = PipelineConfig(
    robot_id='dog3',
    alarm=AlarmConfig(warn_enter_frames=2, error_enter_frames=5, exit_frames=5),
    collection=CollectionConfig(min_interval_s=0.5),
)
OK, WARN, ERROR, STALE = AlarmLevel


@dataclass(frozen=True)
class Seen:
    """What one frame gave, comparable across runs."""

    stamp: float
    level: AlarmLevel
    score: float
    labels: str  # sha256 of the label image

    @classmethod
    def of(cls, r: FrameResult) -> Seen:
        labels = hashlib.sha256(r.labels.tobytes()).hexdigest()
        return cls(r.stamp, r.alarm.level, float(r.unseen.score), labels)


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> mp.ModelPackage:
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


@pytest.fixture(scope='module')
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('bags')
    out = {}
    for storage in ('sqlite3', 'mcap'):
        config = RecordConfig(parse_schedule(SCHEDULE), SECONDS, RATE, 0, storage, START_NS)
        assert record_route(root / storage, config, CAMERA) == 100
        out[storage] = root / storage
    return out


def replay(bag: Path, package: mp.ModelPackage, spool_dir: Path, **kw) -> tuple:
    seen: list[Seen] = []
    with Spool(spool_dir, 100_000_000, 1000) as spool:
        summary = replay_bag(
            bag,
            package.path,
            spool=spool,
            pipeline=CONFIG,
            on_frame=lambda r: seen.append(Seen.of(r)),
            threads=1,
            **kw,
        )
        spooled = {e.sample_id: e.meta() for e in spool.list()}
    return summary, seen, spooled


@pytest.fixture(scope='module')
def replays(bags, package, tmp_path_factory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp('replays')
    return {fmt: replay(bag, package, root / fmt) for fmt, bag in bags.items()}


def entered(summary: ReplaySummary) -> list[AlarmLevel]:
    return [a.level for a in summary.alarms]


def sample_stamps(summary: ReplaySummary) -> list[float]:
    return [e['stamp'] for e in summary.samples]


def test_sim_bag_has_the_camera_topics_with_shared_stamps(bags: dict[str, Path]) -> None:
    for bag in bags.values():
        reader = open_bag(bag)
        try:
            counts = {c.topic: c.msgcount for c in reader.connections}
            assert counts[COLOR_TOPIC] == counts[DEPTH_TOPIC] == counts[COLOR_INFO_TOPIC] == 100
            stamps: dict[str, list[int]] = {}
            tasks = []
            for c, log_time, raw in reader.messages():
                msg = reader.deserialize(raw, c.msgtype)
                if c.topic == TASK_TOPIC:
                    tasks.append(msg.data)
                    continue
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                assert stamp == log_time
                stamps.setdefault(c.topic, []).append(stamp)
                if c.topic == COLOR_TOPIC:
                    assert msg.encoding == 'rgb8' and image_to_numpy(msg).shape == (120, 212, 3)
                elif c.topic == DEPTH_TOPIC:
                    assert msg.encoding == '16UC1' and image_to_numpy(msg).dtype == np.uint16
                elif c.topic == COLOR_INFO_TOPIC:
                    assert tuple(msg.k) == CAMERA.k
        finally:
            reader.close()
        assert tasks == ['sunny', 'snow', 'sunny']
        assert stamps[COLOR_TOPIC] == stamps[DEPTH_TOPIC] == stamps[COLOR_INFO_TOPIC]
        assert stamps[COLOR_TOPIC] == [START_NS + i * 100_000_000 for i in range(100)]


def test_the_fixture_model_scores_the_routes_snow_unseen_and_its_sunny_known(
    package: mp.ModelPackage,
) -> None:
    """The premise of the alarm sequence below, with margins (measured over builds: sunny <=
    0.29, snow 0.98-4.1, median 1.9-2.4; one build scored one snow frame in 30 at 0.98, and the
    alarm sequence held; with the pixel evidence read under the best-explaining task's
    statistics, 26 of 30 snow frames over the threshold, median 1.42, and it held): a failure
    here is the fixture model's, not the replay's."""
    runtime = SegmentationRuntime(package)
    route = Route(parse_schedule(SCHEDULE), 0, CAMERA)
    scores: dict[str, list[float]] = {'sunny': [], 'snow': []}
    for i in range(int(SECONDS * RATE)):
        t = i / RATE
        scores[route.task_at(t)].append(runtime.infer(route.frame_at(t).rgb).unseen.score)
    threshold = package.unseen_calibration().threshold
    sunny, snow = np.array(scores['sunny']), np.array(scores['snow'])
    assert sunny.max() < 0.8 * threshold, f'fixture model: sunny route frames score {sunny}'
    # the alarm needs most of the stretch over the threshold, not every frame
    assert np.mean(snow > threshold) >= 0.8 and np.median(snow) > 1.2 * threshold, (
        f'fixture model: snow route frames score {snow}'
    )


def run_directly(
    frames: list[tuple], package: mp.ModelPackage, spool_dir: Path
) -> tuple[list[Seen], list[dict], FrameCounts]:
    """What the core (the node's ``FrameRunner``) gives for ``frames`` of (stamp ns, colour
    message, depth message or None), one after the other: per-frame results, sample events,
    counts."""
    slot = ModelSlot()
    slot.swap(load_model(package.path, threads=1))
    seen: list[Seen] = []
    events: list[dict] = []
    with Spool(spool_dir, 100_000_000, 1000) as spool:
        pipe = Pipeline(CONFIG, slot, SampleWriter(spool, CONFIG.robot_id, threaded=False))
        runner = FrameRunner(pipe)
        for stamp, color, depth in frames:
            out = runner.frame(color, depth, stamp * 1e-9)
            seen += [Seen.of(out.result)] if out.result is not None else []
            events += out.samples.events
    return seen, events, runner.counts


def test_sqlite3_and_mcap_replays_equal_a_direct_run_of_the_frames(
    replays: dict[str, tuple], package: mp.ModelPackage, tmp_path: Path
) -> None:
    route = Route(parse_schedule(SCHEDULE), 0, CAMERA)
    frames = []
    for i in range(100):
        frame, stamp = route.frame_at(i / RATE), START_NS + i * 100_000_000
        head = header(stamp, 'cam')
        frames.append(
            (stamp, image(frame.rgb, 'rgb8', head), image(frame.depth_mm, '16UC1', head))
        )
    direct, events, counts = run_directly(frames, package, tmp_path / 'spool')

    sqlite_summary, sqlite_seen, _ = replays['sqlite3']
    mcap_summary, mcap_seen, _ = replays['mcap']
    assert sqlite_seen == mcap_seen == direct
    assert sqlite_summary.counts == mcap_summary.counts == counts
    assert entered(sqlite_summary) == entered(mcap_summary) == [OK, WARN, ERROR, OK]
    assert [a.t for a in sqlite_summary.alarms] == [a.t for a in mcap_summary.alarms]
    assert sample_stamps(sqlite_summary) == sample_stamps(mcap_summary)
    assert sample_stamps(sqlite_summary) == [e['stamp'] for e in events]
    assert len(events) >= 2


def test_replay_spools_the_samples_it_reports(replays: dict[str, tuple]) -> None:
    for summary, seen, spooled in replays.values():
        assert summary.frames == summary.frames_in_bag == len(seen) == 100
        assert summary.without_depth == 0 and not summary.problems and not summary.refused
        assert sum(summary.levels.values()) == 100 and summary.levels['ERROR'] > 0
        assert set(spooled) == {e['id'] for e in summary.samples}
        for event in summary.samples:
            meta = spooled[event['id']]
            assert meta['robot_id'] == 'dog3' and meta['stamp'] == event['stamp']
            assert meta['is_unseen']
        # the alarm that entered WARN lists samples collected during its episode
        warn = next(a for a in summary.alarms if a.level == WARN)
        assert set(warn.sample_ids) <= set(spooled)


def test_write_bag_records_the_outputs(bags, package, tmp_path: Path) -> None:
    out = tmp_path / 'out'
    summary, seen, _ = replay(bags['sqlite3'], package, tmp_path / 'spool', write_bag=out,
                              write_storage='mcap')  # fmt: skip
    reader = open_bag(out)
    try:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts['/segmentation/labels'] == counts['/unseen/score'] == 100
        labels, scores, alarms, samples = [], [], [], []
        for c, _, raw in reader.messages():
            msg = reader.deserialize(raw, c.msgtype)
            if c.topic == '/segmentation/labels':
                assert (
                    msg.encoding == 'mono8' and msg.header.frame_id == 'camera_color_optical_frame'
                )
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                assert stamp == START_NS + len(labels) * 100_000_000  # the input's stamp
                labels.append(hashlib.sha256(image_to_numpy(msg).tobytes()).hexdigest())
            elif c.topic == '/unseen/score':
                scores.append(msg.data)
            elif c.topic == '/alarm':
                alarms.append(msg.status[0].level)
            else:
                samples.append(json.loads(msg.data))
    finally:
        reader.close()
    assert labels == [s.labels for s in seen]
    assert np.allclose(scores, [s.score for s in seen], atol=1e-5)
    assert alarms == [int(a.level) for a in summary.alarms]
    assert samples == summary.samples


def test_cli_replay_prints_a_summary(bags, package, tmp_path: Path, capsys) -> None:
    # the alarm settings of CONFIG: the tiny test model's snow scores sit close to the threshold,
    # so the default three frames in a row are not reached on every machine
    code = cli_main(['replay', str(bags['mcap']), '--model', str(package.path), '--spool',
                     str(tmp_path / 'spool'), '--threads', '1', '--json',
                     '--warn-enter-frames', '2', '--error-enter-frames', '5',
                     '--exit-frames', '5'])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out['frames'] == 100 and out['samples_collected'] >= 1
    assert out['alarms_by_level'].get('WARN', 0) >= 1
    assert len(Spool(tmp_path / 'spool', 100_000_000, 1000).list()) == out['samples_collected']


def test_sim_cli_records_a_bag(tmp_path: Path) -> None:
    args = ['bag', '--out', str(tmp_path / 'b'), '--schedule', 'night:1', '--seconds', '0.5',
            '--width', '64', '--height', '48', '--format', 'mcap']  # fmt: skip
    assert sim_main(args) == 0
    assert list((tmp_path / 'b').glob('*.mcap'))
    reader = open_bag(tmp_path / 'b')
    try:
        assert {c.topic: c.msgcount for c in reader.connections}[COLOR_TOPIC] == 5
    finally:
        reader.close()


def test_sim_cli_records_one_pass_of_the_schedule_by_default(tmp_path: Path) -> None:
    args = ['bag', '--out', str(tmp_path / 'b'), '--schedule', 'sunny:0.3,snow:0.2',
            '--rate', '10', '--width', '64', '--height', '48']  # fmt: skip
    assert sim_main(args) == 0
    reader = open_bag(tmp_path / 'b')
    try:
        assert {c.topic: c.msgcount for c in reader.connections}[COLOR_TOPIC] == 5
    finally:
        reader.close()


def test_sim_cli_that_fails_leaves_no_bag(tmp_path: Path, monkeypatch) -> None:
    rendered = []

    def fail_on_the_third_frame(route: Route, t: float):
        if len(rendered) == 2:
            raise MemoryError('fault injected while rendering')
        rendered.append(t)
        return original(route, t)

    original = Route.frame_at
    monkeypatch.setattr(Route, 'frame_at', fail_on_the_third_frame)
    out = tmp_path / 'b'
    with pytest.raises(MemoryError):
        sim_main(['bag', '--out', str(out), '--schedule', 'sunny:1', '--width', '64',
                  '--height', '48'])  # fmt: skip
    assert len(rendered) == 2 and not out.exists()


def test_cli_replay_that_fails_leaves_no_outputs_and_the_rerun_works(
    bags, package, tmp_path: Path, capsys
) -> None:
    out, spool = tmp_path / 'out', tmp_path / 'spool'

    def cli(bag: Path, *extra: str) -> int:
        return cli_main(['replay', str(bag), '--model', str(package.path), '--spool', str(spool),
                         '--write-bag', str(out), '--threads', '1', *extra])  # fmt: skip

    assert cli(tmp_path / 'typo') == 1
    assert 'cannot open bag' in capsys.readouterr().err
    assert not out.exists() and not spool.exists()
    # fails after both outputs were created: the colour topic is not in the bag
    assert cli(bags['sqlite3'], '--color-topic', '/nope') == 1
    assert 'is not in the bag' in capsys.readouterr().err
    assert not out.exists() and not spool.exists()
    assert cli(bags['sqlite3']) == 0
    assert open_bag(out).close() is None and spool.is_dir()


def test_cli_replay_that_fails_keeps_a_spool_it_was_given(bags, package, tmp_path) -> None:
    spool = tmp_path / 'spool'
    Spool(spool, 100_000_000, 1000).close()
    args = ['replay', str(tmp_path / 'typo'), '--model', str(package.path), '--spool', str(spool)]
    assert cli_main(args) == 1
    assert spool.is_dir()


# ---------------------------------------------------------------------------------------------
# Hand-written bags: pairing, gaps and bad input


def write_bag(path: Path, frames: list[dict], storage: str = 'sqlite3') -> list[tuple]:
    """frames: dicts with 'stamp' (ns), optional 'encoding' (of the colour frame), 'depth'
    ('before', 'after', 'none') and 'depth_image' ((pixels, encoding) instead of the route's);
    colour pixels come from the route so the model sees real scenes. Returns the (stamp, colour,
    depth or None) messages written, frame by frame."""
    route = Route(parse_schedule('sunny:100'), 0, CAMERA)
    written = []
    with BagWriter(path, storage) as bag:
        for i, f in enumerate(frames):
            frame = route.frame_at(i / RATE)
            head = header(f['stamp'], 'cam')
            encoding = f.get('encoding', 'rgb8')
            pixels = frame.rgb if encoding == 'rgb8' else frame.rgb[:, :, 0]
            color = image(pixels, encoding, head)
            depth = image(*f.get('depth_image', (frame.depth_mm, '16UC1')), head)
            where = f.get('depth', 'after')
            if where == 'before':
                bag.write(DEPTH_TOPIC, 'sensor_msgs/msg/Image', depth, f['stamp'])
            bag.write(COLOR_TOPIC, 'sensor_msgs/msg/Image', color, f['stamp'])
            if where == 'after':
                bag.write(DEPTH_TOPIC, 'sensor_msgs/msg/Image', depth, f['stamp'])
            written.append((f['stamp'], color, None if where == 'none' else depth))
    return written


def test_depth_pairs_by_stamp_in_either_order_and_a_gap_goes_stale(package, tmp_path) -> None:
    step = 100_000_000
    stamps = [START_NS + i * step for i in range(6)] + [START_NS + 50 * step + i * step
                                                        for i in range(4)]  # fmt: skip
    frames = [{'stamp': s} for s in stamps]
    frames[1]['depth'] = 'before'
    frames[3]['depth'] = 'none'
    write_bag(tmp_path / 'bag', frames)
    summary, seen, _ = replay(tmp_path / 'bag', package, tmp_path / 'spool')
    assert summary.frames == 10 and summary.without_depth == 1
    assert [s.stamp for s in seen] == [s * 1e-9 for s in stamps]
    # 4.5 s without frames: STALE at the tick after stale_after, OK at the next frame
    assert entered(summary) == [OK, STALE, OK]
    assert stamps[5] * 1e-9 < summary.alarms[1].t < stamps[6] * 1e-9


def test_replay_without_depth_topic(package, bags, tmp_path) -> None:
    summary, _, _ = replay(bags['mcap'], package, tmp_path / 'spool',
                           config=ReplayConfig(depth_topic=''))  # fmt: skip
    assert summary.frames == summary.without_depth == 100 and summary.depth_topic == ''


def test_missing_topic_names_the_topics_of_the_bag(package, bags, tmp_path) -> None:
    config = ReplayConfig(depth_topic='/camera/depth/nope')
    with pytest.raises(BagError, match=r"'/camera/depth/nope' is not in the bag.*image_raw"):
        replay(bags['sqlite3'], package, tmp_path / 'spool', config=config)


def test_wrong_encoding_frames_are_counted_or_refused(package, tmp_path) -> None:
    step = 100_000_000
    mixed = [{'stamp': START_NS + i * step, 'encoding': 'mono8' if i % 2 else 'rgb8'}
             for i in range(6)]  # fmt: skip
    write_bag(tmp_path / 'mixed', mixed, 'mcap')
    summary, _, _ = replay(tmp_path / 'mixed', package, tmp_path / 'spool')
    assert summary.frames == 3 and summary.problems == {Issue.COLOR_ENCODING: 3}
    assert "'mono8'" in summary.first_problem[Issue.COLOR_ENCODING]
    assert summary.to_json()['problems'] == {'color_encoding': 3}
    bad = [dict(f, encoding='mono8') for f in mixed]
    write_bag(tmp_path / 'bad', bad)
    with pytest.raises(BagError, match=r"no frame of 6 .* could be processed.*'mono8'"):
        replay(tmp_path / 'bad', package, tmp_path / 'spool')


def test_bad_input_in_a_bag_is_counted_as_the_core_counts_it(package, tmp_path) -> None:
    """Replay moves messages only: a bag with an issue of every kind a recording can carry
    gives, frame by frame, what the core gives for the same messages, and the same counts."""
    step = 100_000_000
    shape = (HEIGHT, WIDTH)
    frames = [{'stamp': START_NS + i * step} for i in range(10)]
    frames[1]['encoding'] = 'mono8'
    frames[2]['depth_image'] = (np.zeros((HEIGHT + 2, WIDTH), np.uint16), '16UC1')
    frames[3]['depth_image'] = (np.zeros(shape, np.uint8), 'mono8')
    frames[4]['depth_image'] = (np.full(shape, np.nan, np.float32), '32FC1')
    frames[5]['depth'] = 'none'
    written = write_bag(tmp_path / 'bag', frames, 'mcap')
    summary, seen, _ = replay(tmp_path / 'bag', package, tmp_path / 'spool')
    direct, events, counts = run_directly(written, package, tmp_path / 'direct')
    assert seen == direct
    assert [e['id'] for e in summary.samples] == [e['id'] for e in events]
    assert summary.counts == counts
    assert summary.problems == {
        Issue.COLOR_ENCODING: 1,
        Issue.DEPTH_SIZE: 1,
        Issue.DEPTH_ENCODING: 1,
        Issue.DEPTH_VALUES: 1,
    }
    # the frames with a depth issue were processed, not refused; three ran without depth
    assert (summary.frames, counts.rejected, summary.without_depth) == (9, 1, 3)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_truncated_or_corrupt_bag_gives_a_clear_error(
    storage: str, bags: dict[str, Path], package, tmp_path: Path
) -> None:
    copy = tmp_path / storage
    copy.mkdir()
    for f in bags[storage].iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    data = next(copy.glob('*.db3' if storage == 'sqlite3' else '*.mcap'))
    size = data.stat().st_size
    with data.open('r+b') as f:
        f.truncate(size // 2)
    with pytest.raises(BagError, match=r'cannot open bag|unreadable after'):
        replay(copy, package, tmp_path / 'spool')


def test_mcap_damaged_in_the_middle_gives_a_clear_error(bags, package, tmp_path) -> None:
    copy = tmp_path / 'mcap'
    copy.mkdir()
    for f in bags['mcap'].iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    data = next(copy.glob('*.mcap'))
    with data.open('r+b') as f:
        f.seek(data.stat().st_size // 2)
        f.write(b'\xff' * 200_000)
    with pytest.raises(BagError, match=r'unreadable after \d+ messages'):
        replay(copy, package, tmp_path / 'spool')


def test_not_a_bag_gives_a_clear_error(package, tmp_path) -> None:
    (tmp_path / 'empty').mkdir()
    for path in (tmp_path / 'empty', tmp_path / 'missing'):
        with pytest.raises(BagError, match='cannot open bag'):
            replay(path, package, tmp_path / 'spool')

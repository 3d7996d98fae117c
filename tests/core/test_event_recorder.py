"""Alarm events: the ring buffer before an ERROR, the bag written into the spool, its upload beside
the samples (exactly once, also across kill -9 of the uploader), and replay of the bag.

Frames are fed with explicit times, so which frames a window holds is decided by the test, never
by the machine's speed; bags are written in the calling thread (``threaded=False``) except in the
test of the writer thread, which waits for the outcome it expects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from robo_lifelong.errors import ConfigError
from robo_lifelong.io.bags import (
    ALARM_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    LABELS_TOPIC,
    SCORE_TOPIC,
    TYPESTORE,
    header,
    image,
    stamp_ns,
)
from robo_lifelong.io.image_conversion import image_to_numpy
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.offline.cli import main as cli_main
from robo_lifelong.offline.replay import open_bag
from robo_lifelong.perception.alarm_policy import AlarmConfig, AlarmLevel, AlarmStatus
from robo_lifelong.perception.event_recorder import EventConfig, EventRecorder, downscale
from robo_lifelong.perception.pipeline import Pipeline, PipelineConfig
from robo_lifelong.perception.runner import FrameRunner
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import Route, parse_schedule
from robo_lifelong.transfer.spool import EVENT_KIND, Spool, make_sample_id
from robo_lifelong.transfer.storage import LocalStorage, join
from robo_lifelong.transfer.uploader import EVENTS_INDEX, UploadConfig, Uploader
from tests.core.test_uploader import check_uploaded, index_ids
from tests.ros.model_fixture import HEIGHT, WIDTH, cached_package

T0 = 1_795_000_000.0  # 2026-11-18 UTC
OK, WARN, ERROR, STALE = AlarmLevel
BIG = 10**12


def status(level: AlarmLevel, t: float = 0.0) -> AlarmStatus:
    return AlarmStatus(level, f'{level.name} at {t}', 0.5, 0.4, 'sunny', 'v1', t, ())


def result(
    t: float, level: AlarmLevel, changed: bool, h: int = 48, w: int = 64
) -> SimpleNamespace:
    """What the recorder reads of a FrameResult: a frame whose pixels encode its time."""
    value = int(t * 10) % 256
    return SimpleNamespace(
        stamp=t,
        rgb=np.full((h, w, 3), value, np.uint8),
        depth_mm=np.full((h, w), 1000 + value, np.uint16),
        labels=np.full((h, w), value % 20, np.uint8),
        unseen=SimpleNamespace(score=t / 100.0),
        alarm=status(level, t),
        alarm_changed=changed,
    )


def feed(recorder: EventRecorder, levels: list[tuple[float, AlarmLevel]], rate: float = 10.0):
    """Frames at ``rate`` from T0 until each (end time, level) in turn."""
    t, level = T0, None
    for end, new in levels:
        while t < T0 + end - 1e-9:
            recorder.frame(t, result(t, new, new is not level))
            level = new
            t = round(t + 1.0 / rate, 6)
    return t


def read_bag(path: Path) -> dict[str, list]:
    """topic -> [(log time ns, message)] of a bag."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        for c, log_time, raw in reader.messages():
            out.setdefault(c.topic, []).append((log_time, reader.deserialize(raw, c.msgtype)))
    return out


CONFIG = EventConfig(pre_s=2.0, post_s=1.0, frame_rate_hz=5.0, max_width=32)


def test_error_spools_one_event_bag_with_the_seconds_before_and_after(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    recorder = EventRecorder(CONFIG, 'dog-1', spool, threaded=False)
    # OK for 5 s, WARN for 1 s, ERROR at 6 s for 3 s, OK again
    feed(recorder, [(5.0, OK), (6.0, WARN), (9.0, ERROR), (12.0, OK)])
    [outcome] = recorder.drain()
    assert outcome.spooled, outcome.error
    [entry] = spool.list()
    meta = entry.meta()
    assert meta['kind'] == EVENT_KIND and entry.is_event()
    assert meta['stamp'] == pytest.approx(T0 + 6.0)
    assert set(entry.files()) == {'metadata.yaml', f'{entry.sample_id}.mcap'}
    assert meta['frames'] == outcome.frames == 16  # 5 Hz over [4, 7] s, ERROR frame included
    assert meta['frames_before_error'] == 10
    assert (meta['width'], meta['height'], meta['with_depth']) == (32, 24, True)
    assert meta['alarm']['level'] == 'ERROR'

    bag = read_bag(entry.path)
    frames = [stamp_ns(m.header) * 1e-9 - T0 for _, m in bag[COLOR_TOPIC]]
    assert frames == pytest.approx([4.0 + 0.2 * i for i in range(16)])
    for topic in (COLOR_TOPIC, DEPTH_TOPIC, LABELS_TOPIC):
        assert [t for t, _ in bag[topic]] == [t for t, _ in bag[COLOR_TOPIC]]
    rgb = image_to_numpy(bag[COLOR_TOPIC][0][1])
    assert rgb.shape == (24, 32, 3) and int(rgb[0, 0, 0]) == int((T0 + 4.0) * 10) % 256
    assert image_to_numpy(bag[DEPTH_TOPIC][0][1]).dtype == np.uint16
    # the score of every frame (10 Hz), the alarm at the window's start and at each change
    assert len(bag[SCORE_TOPIC]) == 31
    levels = [m.status[0].level for _, m in bag[ALARM_TOPIC]]
    assert levels == [OK, WARN, ERROR]
    assert bag[ALARM_TOPIC][2][0] == round((T0 + 6.0) * 1e9)
    # rosbag2's own view: every message is listed in its metadata
    reader = open_bag(entry.path)
    try:
        assert reader.message_count == sum(len(v) for v in bag.values())
    finally:
        reader.close()


def test_ring_buffer_holds_only_pre_s_of_frames(tmp_path):
    recorder = EventRecorder(CONFIG, 'dog-1', Spool(tmp_path / 's', BIG, 10), threaded=False)
    feed(recorder, [(60.0, OK)], rate=30.0)
    frame_bytes = 32 * 24 * (3 + 2 + 1)
    # 2 s at 5 Hz, the ends included
    assert 10 * frame_bytes <= recorder.buffered_bytes <= 11 * frame_bytes
    assert recorder.drain() == [] and not recorder.recording


def test_the_window_closes_on_a_tick_when_frames_stop(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    recorder = EventRecorder(CONFIG, 'dog-1', spool, threaded=False)
    feed(recorder, [(3.0, WARN), (3.5, ERROR)])  # ERROR at 3 s: the window ends at 4 s
    recorder.tick(T0 + 3.9, status(STALE, T0 + 3.9))  # the camera died during the window
    assert recorder.recording
    recorder.tick(T0 + 4.0, status(STALE, T0 + 4.0))
    assert not recorder.recording
    [outcome] = recorder.drain()
    assert outcome.spooled
    bag = read_bag(spool.list()[0].path)
    assert [m.status[0].level for _, m in bag[ALARM_TOPIC]] == [WARN, ERROR, STALE]


def test_a_second_error_inside_the_window_is_the_same_event(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    recorder = EventRecorder(CONFIG, 'dog-1', spool, threaded=False)
    feed(recorder, [(3.0, WARN), (3.3, ERROR), (3.6, OK), (3.7, WARN), (3.9, ERROR), (8.0, OK)])
    assert len(recorder.drain()) == 1 and len(spool.list()) == 1


def test_events_beyond_their_share_of_the_spool_are_refused_with_the_reason(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    config = EventConfig(pre_s=2.0, post_s=1.0, frame_rate_hz=5.0, max_width=32, max_bytes=1)
    recorder = EventRecorder(config, 'dog-1', spool, threaded=False)
    feed(recorder, [(3.0, WARN), (4.0, ERROR), (6.0, OK)])
    [outcome] = recorder.drain()
    assert not outcome.spooled and outcome.full
    assert 'event_max_bytes=1' in outcome.error and spool.list() == []


def test_recording_off_keeps_nothing(tmp_path):
    recorder = EventRecorder(EventConfig(record=False), 'dog-1', Spool(tmp_path, BIG, 10))
    feed(recorder, [(3.0, WARN), (4.0, ERROR), (9.0, OK)])
    assert recorder.buffered_bytes == 0 and recorder.drain() == [] and recorder.health() is None
    recorder.close()


def test_writer_thread_spools_and_close_writes_an_open_window(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    recorder = EventRecorder(CONFIG, 'dog-1', spool)
    feed(recorder, [(3.0, WARN), (3.5, ERROR)])  # window still open
    recorder.close()  # joins the thread: the outcome is there after it
    [outcome] = recorder.drain()
    assert outcome.spooled and spool.list()[0].meta()['frames'] == outcome.frames
    assert recorder.health().failures == 0


def test_downscale_keeps_aspect_and_uses_nearest_for_labels_and_depth():
    labels = np.tile(np.array([1, 7], np.uint8), (100, 320))  # 100x640 stripes of ids 1 and 7
    rgb = np.zeros((100, 640, 3), np.uint8)
    small_rgb, depth, small_labels = downscale(rgb, None, labels, 320)
    assert small_rgb.shape == (50, 320, 3) and depth is None
    assert set(np.unique(small_labels)) <= {1, 7}  # never a mean of two ids
    same = downscale(rgb[:, :300], None, labels[:, :300], 320)
    assert same[0].shape == (100, 300, 3) and same[0].base is not rgb  # a copy


def test_bad_config_is_refused():
    for bad in ({'pre_s': -1.0}, {'frame_rate_hz': 0.0}, {'max_width': 8}, {'max_bytes': 0}):
        with pytest.raises(ConfigError):
            EventConfig(**bad)


# -- upload -------------------------------------------------------------------------------------


def spool_event(spool: Spool, start: float = 0.0) -> str:
    recorder = EventRecorder(CONFIG, 'dog-1', spool, threaded=False)
    recorder.frame(T0 + start, result(T0 + start, WARN, True))
    recorder.frame(T0 + start + 0.2, result(T0 + start + 0.2, ERROR, True))
    recorder.close()
    [outcome] = recorder.drain()
    assert outcome.spooled, outcome.error
    return outcome.event_id


def fill_samples(spool: Spool, stamps: list[float]) -> list[str]:
    ids = []
    for stamp in stamps:
        sid = make_sample_id('dog-1', stamp)
        spool.put(sid, {'rgb.png': os.urandom(300)}, {'stamp': stamp, 'robot_id': 'dog-1'})
        ids.append(sid)
    return ids


def test_events_go_to_events_txt_beside_the_sample_index_never_into_it(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    samples = fill_samples(spool, [T0 - 1.0, T0 + 5.0])
    event = spool_event(spool)
    store = LocalStorage(tmp_path / 'store')
    config = UploadConfig('dog-1', index_key='fleet/unlabeled.txt')
    assert config.events_index_key == f'fleet/{EVENTS_INDEX}'
    uploader = Uploader(spool, store, config)
    assert uploader.drain() == 3 and spool.list() == []
    assert index_ids(store, 'fleet/unlabeled.txt') == samples
    check_uploaded(store, samples, 'fleet/unlabeled.txt')
    check_uploaded(store, [event], 'fleet/events.txt')
    prefix = f'events/dog-1/2026-11-18/{event}'
    assert store.read_bytes('fleet/events.txt').decode() == f'{event} {prefix}\n'
    assert store.list(prefix + '/') == [
        join(prefix, name) for name in (f'{event}.mcap', 'meta.json', 'metadata.yaml')
    ]
    status = uploader.status()
    assert (status.uploaded, status.events_uploaded) == (2, 1)


def test_unknown_kind_is_a_corrupt_entry_kept_in_the_spool(tmp_path):
    spool = Spool(tmp_path / 'spool', BIG, 100)
    sid = make_sample_id('dog-1', T0)
    spool.put(sid, {'x.bin': b'x'}, {'stamp': T0, 'kind': 'movie'})
    uploader = Uploader(spool, LocalStorage(tmp_path / 'store'), UploadConfig('dog-1'))
    assert uploader.drain() == 0 and uploader.status().corrupt == 1
    assert [e.sample_id for e in spool.list()] == [sid]


# The uploader in a subprocess that SIGKILLs itself at a chosen point of uploading the event:
# 'index' after its files were written and before its events.txt line, 'remove' after the line
# and before it left the spool. The test kills it exactly there: no verdict depends on timing.
_KILLED_UPLOADER = textwrap.dedent(
    """
    import os, signal, sys
    from robo_lifelong.transfer.spool import Spool
    from robo_lifelong.transfer.storage import open_storage
    from robo_lifelong.transfer.uploader import UploadConfig, Uploader

    spool_dir, store_url, point, event_id = sys.argv[1:]
    spool, store = Spool(spool_dir, 10**12, 10**6), open_storage(store_url)
    real_append, real_remove = store.append_line_once, spool.remove

    def append_line_once(key, line, unique):
        if point == 'index' and unique == event_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_append(key, line, unique)

    def remove(sample_id):
        if point == 'remove' and sample_id == event_id:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_remove(sample_id)

    store.append_line_once, spool.remove = append_line_once, remove
    Uploader(spool, store, UploadConfig('dog-1')).drain()
    """
)


@pytest.mark.parametrize('point', ['index', 'remove'])
def test_uploader_killed_mid_event_upload_loses_and_duplicates_nothing(tmp_path, point):
    spool_dir, store_dir = tmp_path / 'spool', tmp_path / 'store'
    spool = Spool(spool_dir, BIG, 100)
    before = fill_samples(spool, [T0 - 2.0, T0 - 1.0])
    event = spool_event(spool)
    after = fill_samples(spool, [T0 + 5.0])
    spool.close()
    cmd = [sys.executable, '-c', _KILLED_UPLOADER, str(spool_dir), str(store_dir), point, event]
    done = subprocess.run(cmd, timeout=120, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    store = LocalStorage(store_dir)
    assert index_ids(store) == before
    assert index_ids(store, EVENTS_INDEX) == ([event] if point == 'remove' else [])
    assert store.list(f'events/dog-1/2026-11-18/{event}/')  # its files were up
    spool = Spool(spool_dir, BIG, 100)  # the restarted bridge
    assert [e.sample_id for e in spool.list()] == [event, *after]
    assert Uploader(spool, store, UploadConfig('dog-1')).drain() == 2
    check_uploaded(store, before + after)
    check_uploaded(store, [event], EVENTS_INDEX)
    assert index_ids(store, EVENTS_INDEX) == [event]


# -- the simulated route ------------------------------------------------------------------------

SCHEDULE = 'sunny:4,snow:4,sunny:3'
RATE = 10.0


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory):
    return cached_package(tmp_path_factory.getbasetemp() / 'perception-model')


def test_an_error_on_the_sim_route_gives_one_event_in_storage_that_replays(
    tmp_path, package, capsys
):
    """sunny -> snow -> sunny through the real pipeline: the snow raises ERROR once; its event
    reaches storage with the frames from before the alarm, and the replay CLI runs the model
    over the downloaded bag."""
    spool = Spool(tmp_path / 'spool', BIG, 1000)
    slot = ModelSlot()
    slot.swap(load_model(package.path, 1))
    alarm = AlarmConfig(warn_enter_frames=2, error_enter_frames=5, exit_frames=5)
    runner = FrameRunner(Pipeline(PipelineConfig(robot_id='dog3', alarm=alarm), slot))
    config = EventConfig(pre_s=3.0, post_s=1.0, frame_rate_hz=5.0)
    recorder = EventRecorder(config, 'dog3', spool, threaded=False)
    route = Route(parse_schedule(SCHEDULE), 0, CameraModel(WIDTH, HEIGHT))
    errors, seen = [], {}
    for i in range(round(11 * RATE)):
        t = T0 + i / RATE
        frame = route.frame_at(i / RATE)
        head = header(round(t * 1e9))
        seen[round(t * 1e9)] = frame.rgb
        out = runner.frame(image(frame.rgb, 'rgb8', head), image(frame.depth_mm, '16UC1', head), t)
        if out.alarm is not None and out.alarm.level is ERROR:
            errors.append(t)
        recorder.frame(t, out.result)
    recorder.close()
    assert len(errors) == 1, errors
    [outcome] = recorder.drain()
    assert outcome.spooled, outcome.error

    store = LocalStorage(tmp_path / 'store')
    assert Uploader(spool, store, UploadConfig('dog3')).drain() == 1
    assert index_ids(store) == []  # no sample: the event is not one
    [line] = store.read_bytes(EVENTS_INDEX).decode().splitlines()
    event_id, prefix = line.split()
    local = tmp_path / 'download' / event_id
    for key in store.list(prefix + '/'):
        store.download_file(key, local / key.rsplit('/', 1)[1])
    meta = json.loads((local / 'meta.json').read_text())
    assert meta['stamp'] == pytest.approx(errors[0])
    bag = read_bag(local)
    stamps = [stamp_ns(m.header) * 1e-9 for _, m in bag[COLOR_TOPIC]]
    # 3 s before the alarm at 5 Hz (kept on even tenths, the ERROR frame whenever it came)
    assert errors[0] - 3.0 - 1e-6 <= stamps[0] < errors[0] - 2.8
    assert sum(s < errors[0] - 1e-6 for s in stamps) == 15
    assert errors[0] - 1e-6 <= stamps[-1] <= errors[0] + 1.0 + 1e-6
    for _, msg in bag[COLOR_TOPIC]:  # the frames the model saw, at their size (212 <= 320)
        assert np.array_equal(image_to_numpy(msg), seen[stamp_ns(msg.header)])

    args = [str(local), '--model', str(package.path), '--no-collect', '--json', '--threads', '1']
    assert cli_main(['replay', *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['frames'] == len(stamps)
    assert summary['depth_topic'] == DEPTH_TOPIC and summary['without_depth'] == 0


def test_writer_thread_spools_a_finished_window_by_itself(tmp_path):
    """The window ends with the frames, not with close(); the test waits for the spooling
    itself (a threading.Event), never for a time."""
    spool = Spool(tmp_path / 'spool', BIG, 100)
    recorder = EventRecorder(CONFIG, 'dog-1', spool)
    written = threading.Event()
    real_put = spool.put

    def put(*args, **kwargs):
        path = real_put(*args, **kwargs)
        written.set()
        return path

    spool.put = put
    feed(recorder, [(3.0, WARN), (3.5, ERROR), (5.0, OK)])
    assert written.wait(60), 'the writer thread never spooled the event'
    recorder.close()
    assert [o.spooled for o in recorder.drain()] == [True]

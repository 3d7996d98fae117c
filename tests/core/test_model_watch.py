"""Hot model swap without ROS: verification (hash, schema, smoke inference), the single-reference
swap, rejection with the reason while the old model keeps running, the bridge's record as the one
rule for "current" (at start, on change, after a rollback), and a watcher thread that survives
(and counts) unexpected errors."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.errors import ModelPackageError
from robo_lifelong.labels import CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.installed import CURRENT_FILE, InstalledModel
from robo_lifelong.models.watch import (
    LoadedModel,
    ModelSlot,
    ModelWatcher,
    SwapEvent,
    load_model,
    model_version,
    smoke_frame,
)
from robo_lifelong.supervision import Level, health_summary
from robo_lifelong.transfer.storage import LocalStorage
from tests.core.test_runtime import manifest, tiny_onnx


def write(path: Path, version: int = 1, **changes) -> mp.ModelPackage:
    return mp.write_package(path, tiny_onnx(), dict(manifest(), version=version, **changes))


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(0.01)


class Events:
    def __init__(self) -> None:
        self.items: list[SwapEvent] = []

    def __call__(self, event: SwapEvent) -> None:
        self.items.append(event)


def test_load_model_verifies_and_names_the_version(tmp_path: Path) -> None:
    package = write(tmp_path / 'pkg', version=3)
    model = load_model(package.path, threads=1)
    assert model.version == f'v3-{package.content_hash[:12]}' == model_version(package)
    assert model.threshold is None  # not calibrated
    assert model.runtime.infer(smoke_frame()).labels.shape == smoke_frame().shape[:2]


def test_tampered_model_file_is_rejected_by_hash(tmp_path: Path) -> None:
    package = write(tmp_path / 'pkg')
    data = bytearray(package.model_path.read_bytes())
    data[-1] ^= 0xFF
    package.model_path.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match='sha256 mismatch'):
        load_model(package.path)


def test_package_failing_its_schema_is_rejected(tmp_path: Path) -> None:
    package = write(tmp_path / 'pkg')
    body = json.loads((package.path / mp.MANIFEST_FILE).read_text())
    del body['classes']
    (package.path / mp.MANIFEST_FILE).write_text(json.dumps(body))
    with pytest.raises(ModelPackageError, match='classes'):
        load_model(package.path)


def test_smoke_inference_catches_a_model_that_disagrees_with_its_manifest(tmp_path: Path) -> None:
    # the manifest promises 4 classes, the graph emits 3 logit planes
    classes = [{'id': c.id, 'name': c.name, 'color': list(c.color)} for c in CLASSES[:4]]
    package = write(tmp_path / 'pkg', classes=classes)
    with pytest.raises(ModelPackageError, match='smoke inference|logits of shape'):
        load_model(package.path)


def test_watcher_swaps_a_good_package_and_rejects_a_bad_one(tmp_path: Path) -> None:
    slot, events = ModelSlot(), Events()
    watcher = ModelWatcher(slot, events, threads=1)
    try:
        good = write(tmp_path / 'v1', version=1)
        watcher.request(str(good.path))
        wait_for(lambda: len(events.items) == 1)
        assert events.items[0].accepted and slot.current() is not None
        first = slot.current()
        assert first.version == model_version(good)

        (tmp_path / 'broken').mkdir()
        (tmp_path / 'broken' / mp.MANIFEST_FILE).write_text('{not json')
        (tmp_path / 'broken' / mp.MODEL_FILE).write_bytes(b'x')
        watcher.request(str(tmp_path / 'broken'))
        watcher.request(str(tmp_path / 'missing'))
        wait_for(lambda: len(events.items) == 3)
        rejected = events.items[1:]
        assert not any(e.accepted for e in rejected)
        assert 'not valid JSON' in rejected[0].reason
        missing = tmp_path / 'missing'
        assert rejected[1].reason == f'model package {missing}: the directory does not exist'
        assert slot.current() is first  # the old model keeps running

        watcher.request(str(good.path))  # the model in use again: no swap, no event
        second = write(tmp_path / 'v2', version=2)
        watcher.request(str(second.path))
        wait_for(lambda: len(events.items) == 4)
        assert events.items[3].version == model_version(second)
        assert slot.current().version == model_version(second)
    finally:
        watcher.stop()


def test_slot_never_shows_a_model_before_it_is_verified(tmp_path: Path) -> None:
    package = write(tmp_path / 'pkg')
    release, entered = threading.Event(), threading.Event()

    def slow_loader(path: str, threads: int, verify: bool) -> LoadedModel:
        entered.set()
        release.wait(10)
        return load_model(path, threads, verify)

    slot, events = ModelSlot(), Events()
    watcher = ModelWatcher(slot, events, loader=slow_loader)
    try:
        watcher.request(str(package.path))
        assert entered.wait(10)
        assert slot.current() is None  # still loading (held by the test): frames see no model
        release.set()
        wait_for(lambda: slot.current() is not None)
    finally:
        release.set()
        watcher.stop()


def test_first_look_is_over_only_once_the_start_package_loaded(tmp_path: Path) -> None:
    package = write(tmp_path / 'pkg')
    models = tmp_path / 'models'
    release, entered = threading.Event(), threading.Event()

    def held_loader(path: str, threads: int, verify: bool) -> LoadedModel:
        entered.set()
        release.wait(10)
        return load_model(path, threads, verify)

    slot, events = ModelSlot(), Events()
    watcher = ModelWatcher(slot, events, 1, models, loader=held_loader, initial=package.path)
    try:
        assert entered.wait(10)
        # loading (held by the test): no model, and the reason says it is being looked for
        assert not watcher.looked and slot.current() is None
        assert slot.missing == f'looking at {models / CURRENT_FILE} and {package.path}'
        release.set()
        wait_for(lambda: watcher.looked)
        assert slot.current() is not None and slot.missing == '' and events.items[0].accepted
    finally:
        release.set()
        watcher.stop()


def test_without_a_model_the_slot_says_why_and_how_to_get_one(tmp_path: Path) -> None:
    models, gone = tmp_path / 'models', tmp_path / 'gone'
    broken = write(tmp_path / 'broken')
    (broken.path / mp.MANIFEST_FILE).write_text('{not json')
    cases = {
        'nothing given': ({}, 'no package given: robot.launch.py starts on the shipped base'),
        'no record yet': (
            {'models_dir': models},
            f'no {models / CURRENT_FILE} yet (the bridge writes it once it installed a model)',
        ),
        'missing directory': (
            {'initial': gone},
            f'rejected model package {gone}: the directory does not exist; robot.launch.py',
        ),
        'broken package': (
            {'initial': broken.path},
            f'rejected {broken.path / mp.MANIFEST_FILE}: not valid JSON',
        ),
    }
    for case, (kwargs, reason) in cases.items():
        slot = ModelSlot()
        watcher = ModelWatcher(slot, Events(), threads=1, **kwargs)
        try:
            wait_for(lambda w=watcher: w.looked)
            assert slot.current() is None, case
            assert slot.missing.startswith(reason), (case, slot.missing)
            assert 'model_path:=' in slot.missing, case
        finally:
            watcher.stop()


def install(models_dir: Path, package: mp.ModelPackage) -> None:
    """What the bridge does (``transfer.model_sync``): the package at ``<models_dir>/<hash>``,
    then the record naming it, replaced atomically."""
    if not (models_dir / package.content_hash).exists():
        shutil.copytree(package.path, models_dir / package.content_hash)
    record = InstalledModel.for_package(package).to_bytes(models_dir)
    LocalStorage(models_dir).write_bytes(CURRENT_FILE, record)


class CountingWatcher:
    """A watcher on ``models_dir`` whose loads and finished record polls are counted."""

    def __init__(self, models_dir: Path, initial: Path | None = None) -> None:
        self.slot, self.events = ModelSlot(), Events()
        self.loads: list[tuple[str, bool]] = []
        self.polls: list[int] = []

        def loader(path: str, threads: int, verify: bool) -> LoadedModel:
            self.loads.append((path, verify))
            return load_model(path, threads, verify)

        self.watcher = ModelWatcher(
            self.slot, self.events, 1, models_dir, 0.02, loader, initial=initial
        )
        poll = self.watcher._poll

        def counting_poll() -> bool:
            try:
                return poll()
            finally:
                self.polls.append(1)

        self.watcher._poll = counting_poll

    def version(self) -> int | None:
        model = self.slot.current()
        return None if model is None else model.package.version

    def polls_after(self, count: int = 2) -> None:
        """Wait until ``count`` more polls finished (counted, not timed)."""
        done = len(self.polls)
        wait_for(lambda: len(self.polls) >= done + count)


def test_the_record_decides_current_also_for_an_older_version_and_after_a_restart(
    tmp_path: Path,
) -> None:
    models = tmp_path / 'models'
    v1, v2 = write(tmp_path / 'v1', version=1), write(tmp_path / 'v2', version=2)
    install(models, v1)
    install(models, v2)
    w = CountingWatcher(models)
    try:
        wait_for(lambda: w.version() == 2)
        # trusted: the bridge verified the package when it installed it
        assert w.loads == [(str(models / v2.content_hash), False)]
        install(models, v1)  # rollback: the record names the older package again
        wait_for(lambda: w.version() == 1)
        w.polls_after(3)
        assert [e.version for e in w.events.items] == [model_version(v2), model_version(v1)]
    finally:
        w.watcher.stop()
    # a restarted node goes by the record, not by the highest version in the directory
    restarted = CountingWatcher(models, initial=v2.path)
    try:
        wait_for(lambda: restarted.version() == 1)
        restarted.polls_after(3)
        assert restarted.version() == 1 and len(restarted.loads) == 1
    finally:
        restarted.watcher.stop()


def test_initial_package_is_used_only_while_there_is_no_record(tmp_path: Path) -> None:
    models = tmp_path / 'models'
    models.mkdir()
    start, deployed = write(tmp_path / 'start', version=5), write(tmp_path / 'v1', version=1)
    w = CountingWatcher(models, initial=start.path)
    try:
        wait_for(lambda: w.version() == 5)
        assert w.loads == [(str(start.path), True)]  # not from the bridge: verified in full
        install(models, deployed)
        wait_for(lambda: w.version() == 1)
    finally:
        w.watcher.stop()


def test_a_rejected_record_is_not_retried_until_it_changes(tmp_path: Path) -> None:
    models = tmp_path / 'models'
    good, bad = write(tmp_path / 'v1', version=1), write(tmp_path / 'v3', version=3)
    install(models, good)
    w = CountingWatcher(models)
    try:
        wait_for(lambda: w.version() == 1)
        # a package damaged on the robot's disk after its installation: not hashed again, but
        # onnxruntime cannot load it
        # (damaged before the record names it: the watcher may poll at any moment)
        shutil.copytree(bad.path, models / bad.content_hash)
        (models / bad.content_hash / mp.MODEL_FILE).write_bytes(b'damaged')
        install(models, bad)
        wait_for(lambda: len(w.events.items) == 2)
        assert not w.events.items[1].accepted and 'onnxruntime' in w.events.items[1].reason
        w.polls_after(3)
        assert len(w.loads) == 2 and w.version() == 1  # the old model keeps running
        # replaced atomically, as the bridge writes it: written in place, a poll between the
        # truncation and the write saw an empty record, a second rejection
        LocalStorage(models).write_bytes(CURRENT_FILE, b'{not json')
        wait_for(lambda: len(w.events.items) == 3)
        assert 'not a JSON record' in w.events.items[2].reason
        install(models, good)  # the model in use: no swap, no event
        w.polls_after(3)
        assert len(w.events.items) == 3 and w.version() == 1
    finally:
        w.watcher.stop()


def test_smoke_frame_is_fixed() -> None:
    np.testing.assert_array_equal(smoke_frame(), smoke_frame())
    assert smoke_frame().dtype == np.uint8 and len(np.unique(smoke_frame())) > 16


def test_unexpected_loader_error_is_a_rejection_counted_and_survived(tmp_path: Path) -> None:
    good = write(tmp_path / 'good')
    calls: list[str] = []

    def buggy_then_real(path: str, threads: int, verify: bool) -> LoadedModel:
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError('loader bug (test)')
        return load_model(path, threads, verify)

    slot, events = ModelSlot(), Events()
    watcher = ModelWatcher(slot, events, threads=1, loader=buggy_then_real)
    try:
        watcher.request(str(good.path))
        watcher.request(str(good.path))
        wait_for(lambda: len(events.items) == 2)
        assert not events.items[0].accepted
        assert events.items[0].reason == 'RuntimeError: loader bug (test)'
        assert events.items[1].accepted and slot.current() is not None
        health = watcher.health()
        assert health.alive and health.total_failures == 1 and health.failures == 0
        assert health.last_error == 'RuntimeError: loader bug (test)'
    finally:
        watcher.stop()


def test_a_failing_event_callback_is_counted_and_survived(tmp_path: Path) -> None:
    good = write(tmp_path / 'good')
    seen: list[SwapEvent] = []

    def on_event(event: SwapEvent) -> None:
        seen.append(event)
        if len(seen) == 1:
            raise ValueError('callback bug (test)')

    watcher = ModelWatcher(ModelSlot(), on_event, threads=1)
    try:
        watcher.request(str(tmp_path / 'missing'))  # rejected: the callback raises
        watcher.request(str(good.path))
        wait_for(lambda: len(seen) == 2)
        assert seen[1].accepted
        wait_for(lambda: watcher.health().failures == 0)  # the second step went through
        assert watcher.health().total_failures == 1
    finally:
        watcher.stop()


# the thread's death is the point: pytest reports what ended it as a warning
@pytest.mark.filterwarnings('ignore::pytest.PytestUnhandledThreadExceptionWarning')
def test_a_dead_watcher_thread_is_an_error_naming_it(tmp_path: Path) -> None:
    def fatal(path: str, threads: int, verify: bool) -> LoadedModel:
        raise SystemExit('not an Exception: ends the thread')

    watcher = ModelWatcher(ModelSlot(), Events(), loader=fatal)
    watcher.request(str(tmp_path))
    watcher._thread.join(10)
    assert not watcher.health().alive
    level, message = health_summary([watcher.health()])
    assert level is Level.ERROR and message == 'thread model-watch is not running'

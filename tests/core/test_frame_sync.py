"""RGB-depth pairing by stamp with a bounded wait."""

from robo_lifelong.io.frame_sync import FrameSync, pair_recorded

MS = 1_000_000


def test_depth_after_rgb_pairs_immediately():
    sync = FrameSync(max_wait_s=0.05)
    assert sync.add_rgb(100 * MS, 'rgb', now_ns=0) is None
    pair = sync.add_depth(100 * MS, 'depth')
    assert (pair.stamp_ns, pair.rgb, pair.depth) == (100 * MS, 'rgb', 'depth')


def test_depth_before_rgb_pairs_on_rgb():
    sync = FrameSync()
    assert sync.add_depth(5 * MS, 'd5') is None
    pair = sync.add_rgb(5 * MS, 'c5', now_ns=0)
    assert pair.depth == 'd5'


def test_mismatched_stamps_do_not_pair_and_rgb_expires_alone():
    sync = FrameSync(max_wait_s=0.05)
    sync.add_rgb(100 * MS, 'rgb', now_ns=0)
    assert sync.add_depth(120 * MS, 'other') is None
    assert sync.expire(now_ns=10 * MS) is None  # still within the wait
    pair = sync.expire(now_ns=60 * MS)
    assert pair.rgb == 'rgb' and pair.depth is None
    assert sync.expire(now_ns=200 * MS) is None  # released once


def test_only_newest_rgb_is_kept_and_drops_are_counted():
    sync = FrameSync()
    for k in range(5):
        sync.add_rgb(k * MS * 66, f'c{k}', now_ns=k)
    assert sync.dropped == 4
    pair = sync.add_depth(4 * MS * 66, 'd4')
    assert pair.rgb == 'c4'


def test_depth_buffer_is_bounded():
    sync = FrameSync(keep_depth=3)
    for k in range(10):
        sync.add_depth(k * MS * 66, k)
    assert sync.add_rgb(0, 'old', now_ns=0) is None  # its depth was evicted
    assert sync.add_rgb(9 * MS * 66, 'new', now_ns=0).depth == 9


def _released(messages, with_depth=True, max_wait_ns=50 * MS, keep_early=16):
    out = pair_recorded(messages, with_depth, max_wait_ns, keep_early)
    return [(r.stamp_ns, r.log_time_ns, r.rgb, r.depth) for r in out]


def test_recorded_frames_pair_by_exact_stamp_in_either_order():
    messages = [
        (True, 0, 0, 'c0'),
        (False, 1, 0, 'd0'),  # after its colour frame
        (False, 10, 10, 'd10'),  # before it
        (True, 11, 10, 'c10'),
        (True, 20, 20, 'c20'),
        (False, 21, 19, 'd19'),  # another stamp: no match
    ]
    assert _released(messages) == [
        (0, 0, 'c0', 'd0'),
        (10, 11, 'c10', 'd10'),
        (20, 20, 'c20', None),  # released at the end of the recording, without depth
    ]


def test_a_recorded_frame_waits_for_its_depth_in_log_time_then_goes_without():
    messages = [
        (True, 0, 0, 'c0'),
        (True, 30 * MS, 30 * MS, 'c30'),
        (False, 40 * MS, 30 * MS, 'd30'),
        (True, 60 * MS, 60 * MS, 'c60'),  # 60 ms after c0: c0 waited long enough
        (False, 61 * MS, 60 * MS, 'd60'),
    ]
    # every colour frame comes out, in order, even though c30 was ready before c0 gave up
    assert [(r[2], r[3]) for r in _released(messages)] == [
        ('c0', None),
        ('c30', 'd30'),
        ('c60', 'd60'),
    ]


def test_recorded_early_depth_is_bounded_and_without_depth_nothing_waits():
    early = [(False, i, i, f'd{i}') for i in range(5)]
    released = _released(early + [(True, 10, 0, 'c0'), (True, 11, 4, 'c4')], keep_early=2)
    assert [(r[2], r[3]) for r in released] == [('c0', None), ('c4', 'd4')]  # d0 went first
    assert _released([(True, 0, 0, 'c0')], with_depth=False) == [(0, 0, 'c0', None)]

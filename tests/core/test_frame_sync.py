"""RGB-depth pairing by stamp with a bounded wait."""

from robo_lifelong.io.frame_sync import FrameSync

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

"""rosbag2 recordings without ROS: standard messages built and written with ``rosbags``.

Messages are rosbags' own dataclasses from its bundled Humble typestore (the definitions of the
sensor_msgs/std_msgs/diagnostic_msgs types we write are the same in every ROS 2 release since),
so a bag is written in sqlite3 or MCAP on a machine without ROS and read back by ``ros2 bag``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from robo_lifelong.errors import BagError, ImageConversionError
from robo_lifelong.io.image_conversion import pixel_format

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
STORAGE: dict[str, StoragePlugin] = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
# camera topics as the sim camera node and the RealSense driver publish them (root namespace)
COLOR_TOPIC = '/camera/color/image_raw'
DEPTH_TOPIC = '/camera/aligned_depth_to_color/image_raw'
# perception outputs, as the node publishes them in the root namespace (replay, event bags)
LABELS_TOPIC = '/segmentation/labels'
SCORE_TOPIC = '/unseen/score'
ALARM_TOPIC = '/alarm'
_BAG_VERSION = 8  # rosbag2 metadata version 8: message definitions stored with the topics

_types = TYPESTORE.types
Header = _types['std_msgs/msg/Header']
Time = _types['builtin_interfaces/msg/Time']
IMAGE_TYPE = 'sensor_msgs/msg/Image'
Image = _types[IMAGE_TYPE]


def stamp_ns(header: Any) -> int:
    """Nanoseconds since the epoch of a (ROS or rosbags) ``std_msgs/Header``."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def header(stamp: int, frame_id: str = '') -> Any:
    """A rosbags ``std_msgs/Header`` stamped ``stamp`` nanoseconds since the epoch."""
    sec, nanosec = divmod(stamp, 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image(pixels: np.ndarray, encoding: str, head: Any) -> Any:
    """A rosbags ``sensor_msgs/Image`` of ``pixels`` ((H, W) or (H, W, C) in the encoding's dtype),
    native byte order, rows unpadded. Raises ImageConversionError when they do not fit."""
    fmt = pixel_format(encoding)
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    if pixels.ndim not in (2, 3) or channels != fmt.channels or pixels.dtype != fmt.dtype:
        raise ImageConversionError(
            f'array {pixels.shape!r} {pixels.dtype} does not fit encoding {encoding!r}'
        )
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    height, width = pixels.shape[:2]
    return Image(
        header=head,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(sys.byteorder == 'big'),
        step=width * fmt.bytes_per_pixel,
        data=data,
    )


class BagWriter:
    """Writes messages to a new bag at ``path``; a topic's connection is added on first use.

    ``compress`` (MCAP only) zstd-compresses the file's chunks, as the rosbag2 MCAP plugin's
    ``zstd_fast`` preset does: readers decompress them on their own (the bag's
    metadata says no compression), so ``ros2 bag play`` and ``rosbags`` open it unchanged.
    """

    def __init__(
        self, path: str | os.PathLike, storage: str = 'sqlite3', compress: bool = False
    ) -> None:
        if storage not in STORAGE:
            raise BagError(f'unknown bag storage {storage!r}; choose one of {", ".join(STORAGE)}')
        if compress and storage != 'mcap':
            raise BagError(f'chunk compression needs MCAP storage, not {storage!r}')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{str(self.path)!r} exists; a bag is written to a new directory')
        self._writer = Writer(self.path, version=_BAG_VERSION, storage_plugin=STORAGE[storage])
        if compress:
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._connections: dict[str, Any] = {}
        self.messages = 0

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except (WriterError, OSError) as e:
            raise BagError(f'cannot create bag {str(self.path)!r}: {e}') from e
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msgtype: str, message: Any, t: int) -> None:
        """Serialise ``message`` (a rosbags ``msgtype``) on ``topic`` at log time ``t`` ns."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._connections[topic] = connection
        self._writer.write(connection, t, TYPESTORE.serialize_cdr(message, msgtype))
        self.messages += 1


@contextmanager
def new_bag(path: str | os.PathLike, storage: str = 'sqlite3') -> Iterator[BagWriter]:
    """An open BagWriter of the new bag ``path`` that is removed again if the block fails (an
    error or an interrupt), so a failed command leaves no partial bag behind, and its rerun is
    not refused for an existing directory."""
    bag = BagWriter(path, storage)  # refuses an existing path: only a bag made here is removed
    try:
        with bag:
            yield bag
    except BaseException:
        shutil.rmtree(bag.path, ignore_errors=True)
        raise

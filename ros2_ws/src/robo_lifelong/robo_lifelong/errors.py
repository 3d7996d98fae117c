"""Error types shared by the core modules; nodes catch these at the callback edge."""


class RoboLifelongError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RoboLifelongError, ValueError):
    """A parameter, environment variable or config file has a bad or missing value."""


class ImageConversionError(RoboLifelongError, TypeError):
    """A sensor_msgs/Image cannot be converted (encoding, size, step or buffer length)."""


class DatasetError(RoboLifelongError, ValueError):
    """A Sedna dataset index or one of the files it names is missing or malformed."""


class StorageError(RoboLifelongError):
    """A storage URL is malformed, or an object is missing or its store is unreachable."""


class ObjectMissing(StorageError):
    """The object (or local file) a storage URL names does not exist."""


class PreconditionFailed(StorageError):
    """A conditional write lost a race: the object changed since it was read (HTTP 412/409)."""


class ReportError(RoboLifelongError):
    """A worker report to Sedna's LocalController was refused or could not be delivered."""


class SpoolError(RoboLifelongError):
    """The on-robot sample spool cannot take or give a sample (bad id, unreadable entry)."""


class SpoolFullError(SpoolError):
    """The spool is at its size or count bound, or its disk is full: the sample was refused and
    nothing already spooled was touched."""


class ModelPackageError(RoboLifelongError):
    """A model package or deploy pointer is missing, malformed, fails its schema or its hash."""


class CorruptSample(SpoolError):
    """A spooled sample's files disagree with its meta.json (names, sizes or sha256), or its
    meta.json is unreadable: it cannot be uploaded as it was collected."""


class FrameError(RoboLifelongError, ValueError):
    """An input frame cannot be processed (size bound, stamp order, mismatched depth); the frame
    is skipped and the node keeps running."""


class BagError(RoboLifelongError):
    """A rosbag2 recording cannot be read or written (missing, truncated, no such topic)."""

"""Error types shared by the core modules; nodes catch these at the callback edge."""


class RoboLifelongError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(RoboLifelongError, ValueError):
    """A parameter, environment variable or config file has a bad or missing value."""


class ImageConversionError(RoboLifelongError, TypeError):
    """A sensor_msgs/Image cannot be converted (encoding, size, step or buffer length)."""


class DatasetError(RoboLifelongError, ValueError):
    """A Sedna dataset index or one of the files it names is missing or malformed."""

"""Where the package's Fast DDS profile lives (shared memory for large images; see
``config/fastdds_shm.xml``), for launch files, tests and users setting
``FASTDDS_DEFAULT_PROFILES_FILE``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

PACKAGE = 'robo_lifelong'
PROFILE_NAME = 'fastdds_shm.xml'
PROFILES_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
# robo_lifelong/dds.py -> <package source dir>/config/ in a checkout (or a develop install)
_SOURCE_CONFIG = Path(__file__).resolve().parent.parent / 'config'


def _installed_config() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE)) / 'config'
    # PackageNotFoundError is a LookupError; an unset AMENT_PREFIX_PATH raises OSError
    except (LookupError, OSError) as e:
        log.debug('%s not in the ament index: %s', PACKAGE, e)
        return None


def default_profile_path() -> Path:
    """The Fast DDS profile file: the installed ``share/robo_lifelong/config`` copy if the
    package is in the ament index, else the one in the source tree. ConfigError if neither."""
    candidates = [d / PROFILE_NAME for d in (_installed_config(), _SOURCE_CONFIG) if d]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f'Fast DDS profile {PROFILE_NAME!r} not found; looked at {candidates!r}')


def profile_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default ``os.environ``) with ``FASTDDS_DEFAULT_PROFILES_FILE``
    pointing at the package profile, for starting nodes as subprocesses."""
    env = dict(os.environ if environ is None else environ)
    env[PROFILES_ENV] = str(default_profile_path())
    return env

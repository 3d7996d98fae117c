"""Where the package's installed files are: ``share/robo_lifelong/`` (config/, launch/, the
shipped base model in models/base/), for nodes, the cloud worker, tools and tests.

Looked up in order: the ament index (a colcon install, or the venv setup, which registers the
source tree there), the Python prefix (a plain ``pip install`` of the package, as in the cloud
image, puts setup.py's data_files under ``<prefix>/share``), the source tree (a checkout).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from robo_lifelong.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGE = 'robo_lifelong'
BASE_MODEL = 'models/base'  # the shipped base model's package (``make base-model``)
# robo_lifelong/share.py -> the package's source dir (config/, models/ beside the Python package)
SOURCE_DIR = Path(__file__).resolve().parents[1]


def _ament_share() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    # PackageNotFoundError is a LookupError; an unset AMENT_PREFIX_PATH raises OSError
    except (LookupError, OSError) as e:
        log.debug('%s not in the ament index: %s', PACKAGE, e)
        return None


def candidates(relative: str) -> list[Path]:
    """Where ``relative`` (a path below share/robo_lifelong) may be, in lookup order."""
    roots = [_ament_share(), Path(sys.prefix) / 'share' / PACKAGE, SOURCE_DIR]
    return [root / relative for root in roots if root is not None]


def find(relative: str) -> Path:
    """The first existing ``relative`` of ``candidates``; ConfigError naming where it looked."""
    places = candidates(relative)
    for path in places:
        if path.exists():
            return path
    raise ConfigError(f'{relative!r} of {PACKAGE} not found; looked at {[str(p) for p in places]}')

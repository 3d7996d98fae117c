"""The robot package's architecture, checked on its source: the layer order of its sub-packages,
ROS only in ``nodes/``, nothing from the cloud worker's venv (torch, ...) and no import cycles.

Every module under ros2_ws/src/robo_lifelong/robo_lifelong is parsed with ``ast`` (nothing is
imported, so this runs in either venv), imports inside functions and ``TYPE_CHECKING`` blocks
included: a deferred import still couples the modules. ``LAYERS`` is the one statement of the
order; docs/design.md shows it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / 'ros2_ws' / 'src' / 'robo_lifelong' / 'robo_lifelong'
ROOT = 'robo_lifelong'

# Lowest first. A module may import from its own layer or lower ones. 'base' is the modules
# directly in robo_lifelong/ (errors, labels, supervision, ...); every other layer is a
# sub-package of that name.
LAYERS = ('base', 'io', 'models', 'transfer', 'perception', 'sim', 'offline', 'nodes')
ROS_LAYER = 'nodes'
# The ROS 2 runtime: client libraries, message packages, launch. The ROS-free core reads images
# through duck-typed messages (io/image_conversion.py) and bags with ``rosbags``, a pure-Python
# library that is not ROS. ``ament_index_python`` is not listed either: it only finds files under
# AMENT_PREFIX_PATH, and io/dds.py imports it optionally to find installed config files.
ROS_MODULES = frozenset(
    {
        'rclpy',
        'rcl_interfaces',
        'builtin_interfaces',
        'launch',
        'launch_ros',
        'launch_testing',
        'launch_testing_ros',
        'rosbag2_py',
        'rosidl_runtime_py',
        'message_filters',
        'cv_bridge',
        'tf2_ros',
    }
)
ROS_SUFFIXES = ('_msgs', '_srvs', '_interfaces')  # std_msgs, sensor_msgs, diagnostic_msgs, ...
# Installed only with the cloud worker (requirements/cloud.txt): the robot has none of them.
CLOUD_ONLY = frozenset(
    {
        'torch',
        'torchvision',
        'onnxscript',
        'safetensors',
        'matplotlib',
        'sklearn',
        'robo_lifelong_cloud',
    }
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. 'robo_lifelong.models.watch'
    target: str  # the module imported as written (resolved if relative)
    line: int

    def __str__(self) -> str:
        return f'{self.source} (line {self.line}) imports {self.target}'


def module_name(path: Path, package_dir: Path) -> str:
    """robo_lifelong/models/watch.py -> robo_lifelong.models.watch; an __init__.py names its
    package."""
    parts = list(path.relative_to(package_dir.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path, package_dir: Path) -> list[Import]:
    """Every import statement in the file, anywhere in it, with relative ones resolved."""
    source = module_name(path, package_dir)
    is_package = path.name == '__init__.py'
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [Import(source, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = source.split('.')
                keep = len(parts) - node.level + is_package
                base = '.'.join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ''
            # ``from a.b import c`` may name the module a.b.c or a name in a.b
            out.append(Import(source, base, node.lineno))
            out += [Import(source, f'{base}.{alias.name}', node.lineno) for alias in node.names]
    return out


@dataclass(frozen=True)
class Graph:
    imports: dict[str, list[Import]]  # module -> its imports, for every module of the package
    packages: frozenset[str]  # the sub-packages, e.g. 'robo_lifelong.models'

    def layer_of(self, module: str) -> str:
        parts = module.split('.')
        if len(parts) > 1 and '.'.join(parts[:2]) in self.packages:
            return parts[1]
        return 'base'


def project_graph(package_dir: Path) -> Graph:
    paths = sorted(package_dir.rglob('*.py'))
    return Graph(
        {module_name(path, package_dir): imports_of(path, package_dir) for path in paths},
        frozenset(f'{ROOT}.{init.parent.name}' for init in package_dir.glob('*/__init__.py')),
    )


def layer_violations(graph: Graph) -> list[str]:
    """Imports of a higher layer, and modules in a sub-package that ``LAYERS`` does not place."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = []
    for package in sorted(graph.packages):
        if graph.layer_of(package) not in rank:
            out.append(f'{package}: sub-package {graph.layer_of(package)!r} is not in LAYERS')
    for imports in graph.imports.values():
        for imp in imports:
            if imp.target not in graph.imports:
                continue  # a name inside a module, or outside the project
            here, there = graph.layer_of(imp.source), graph.layer_of(imp.target)
            if here in rank and there in rank and rank[there] > rank[here]:
                out.append(f'{imp}: layer {there!r} is above {here!r}')
    return out


def foreign_violations(graph: Graph) -> list[str]:
    """ROS outside ``nodes/`` and cloud-only packages anywhere."""
    out = []
    for imports in graph.imports.values():
        # one report per statement: ``from a.b import c`` names a.b and a.b.c
        for imp in dict.fromkeys(
            Import(i.source, i.target.split('.')[0], i.line) for i in imports
        ):
            is_ros = imp.target in ROS_MODULES or imp.target.endswith(ROS_SUFFIXES)
            if is_ros and graph.layer_of(imp.source) != ROS_LAYER:
                out.append(f'{imp}: ROS outside {ROS_LAYER}/')
            if imp.target in CLOUD_ONLY:
                out.append(f'{imp}: not installed on the robot')
    return out


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles between project modules (Tarjan's strongly connected components)."""
    modules = graph.imports
    edges = {
        m: sorted({i.target for i in imps if i.target in modules} - {m})
        for m, imps in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~80)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def check(package_dir: Path) -> list[str]:
    """Every violation in the package at ``package_dir``, one line each."""
    graph = project_graph(package_dir)
    cyc = [f'import cycle among {", ".join(c)}' for c in cycles(graph)]
    return layer_violations(graph) + foreign_violations(graph) + cyc


def test_the_robot_package_keeps_its_architecture() -> None:
    assert check(PACKAGE_DIR) == []


def test_every_layer_exists_and_the_parse_sees_the_package() -> None:
    graph = project_graph(PACKAGE_DIR)
    assert {graph.layer_of(m) for m in graph.imports} == set(LAYERS)
    node_imports = graph.imports[f'{ROOT}.nodes.perception_node']
    assert any(i.target.split('.')[0] == 'rclpy' for i in node_imports)


def test_the_design_doc_shows_the_layers_in_order() -> None:
    """docs/design.md's package map lists the robot layers lowest first, as ``LAYERS`` does."""
    text = (REPO / 'docs' / 'design.md').read_text()
    section = text.split('## Package map', 1)[1].split('\n## ', 1)[0]
    shown = []
    for row in section.splitlines():
        first = row.split('|')[1].strip() if row.startswith('|') else ''
        if first.startswith('base:'):
            shown.append('base')
        elif match := re.fullmatch(r'`robo_lifelong/(\w+)/`', first):
            shown.append(match.group(1))
    assert tuple(shown) == LAYERS


def _write(root: Path, files: dict[str, str]) -> Path:
    package = root / ROOT
    for rel, text in {'__init__.py': '', **files}.items():
        path = package / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


@pytest.mark.parametrize(
    ('files', 'message'),
    [
        (  # upward, from a function body
            {
                'io/__init__.py': '',
                'io/frames.py': 'def f():\n    from robo_lifelong.perception import pipeline\n',
                'perception/__init__.py': '',
                'perception/pipeline.py': '',
            },
            'robo_lifelong.io.frames (line 2) imports robo_lifelong.perception.pipeline: layer '
            "'perception' is above 'io'",
        ),
        (  # upward, relative, from a base module
            {
                'errors.py': 'from .models import unseen\n',
                'models/__init__.py': '',
                'models/unseen.py': '',
            },
            "robo_lifelong.errors (line 1) imports robo_lifelong.models.unseen: layer 'models' "
            "is above 'base'",
        ),
        (
            {'gadgets/__init__.py': ''},
            "robo_lifelong.gadgets: sub-package 'gadgets' is not in LAYERS",
        ),
        (
            {'sim/__init__.py': '', 'sim/camera.py': 'from sensor_msgs.msg import Image\n'},
            'robo_lifelong.sim.camera (line 1) imports sensor_msgs: ROS outside nodes/',
        ),
        (
            {'perception/__init__.py': '', 'perception/p.py': 'import rclpy.node\n'},
            'robo_lifelong.perception.p (line 1) imports rclpy: ROS outside nodes/',
        ),
        (
            {'nodes/__init__.py': '', 'nodes/n.py': 'import torch\n'},
            'robo_lifelong.nodes.n (line 1) imports torch: not installed on the robot',
        ),
        (
            {'models/__init__.py': '', 'models/m.py': 'from robo_lifelong_cloud import train\n'},
            'robo_lifelong.models.m (line 1) imports robo_lifelong_cloud: not installed on the '
            'robot',
        ),
        (
            {
                'io/__init__.py': '',
                'io/a.py': 'from robo_lifelong.io import b\n',
                'io/b.py': 'import robo_lifelong.io.a\n',
            },
            'import cycle among robo_lifelong.io.a, robo_lifelong.io.b',
        ),
    ],
)
def test_each_kind_of_violation_is_reported(tmp_path: Path, files: dict, message: str) -> None:
    assert message in check(_write(tmp_path, files))


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    package = _write(
        tmp_path,
        {
            'errors.py': '',
            'io/__init__.py': '',
            'io/bags.py': 'from rosbags.highlevel import AnyReader\nfrom ..errors import X\n',
            'nodes/__init__.py': '',
            'nodes/n.py': 'import rclpy\nfrom std_msgs.msg import String\nfrom ..io import bags\n',
        },
    )
    assert check(package) == []

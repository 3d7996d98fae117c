"""dds: the shipped Fast DDS profile and how it is found (source tree or ament install)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from robo_lifelong import share
from robo_lifelong.errors import ConfigError
from robo_lifelong.io import dds

NS = {'f': 'http://www.eprosima.com'}


def _fake_install(prefix: Path) -> Path:
    (prefix / 'share/ament_index/resource_index/packages').mkdir(parents=True)
    (prefix / 'share/ament_index/resource_index/packages/robo_lifelong').write_text('')
    config = prefix / 'share/robo_lifelong/config'
    config.mkdir(parents=True)
    (config / dds.PROFILE_NAME).write_text('<dds/>')
    return config / dds.PROFILE_NAME


def test_source_tree_profile_is_found_without_an_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    monkeypatch.setattr(sys, 'prefix', str(tmp_path))  # no pip install there either
    path = dds.default_profile_path()
    assert path == Path(dds.__file__).resolve().parents[2] / 'config' / 'fastdds_shm.xml'


def test_installed_profile_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = _fake_install(tmp_path)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert dds.default_profile_path() == installed
    names = dds.profile_env_names()
    assert dds.profile_environ({'A': 'b'}) == {'A': 'b', **dict.fromkeys(names, str(installed))}


@pytest.mark.parametrize(
    'version, names',
    [
        ('8.4.3', (dds.PROFILES_ENV, dds.LEGACY_PROFILES_ENV)),  # Jazzy: Fast DDS 2.14
        ('9.3.3', (dds.PROFILES_ENV,)),  # Kilted: Fast DDS 3, which warns about the old name
        (None, (dds.PROFILES_ENV, dds.LEGACY_PROFILES_ENV)),  # unknown: both
    ],
)
def test_profile_variables_follow_the_fast_dds_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str | None, names: tuple
) -> None:
    installed = _fake_install(tmp_path)
    if version is not None:
        (tmp_path / 'share/ament_index/resource_index/packages/rmw_fastrtps_cpp').write_text('')
        (tmp_path / 'share/rmw_fastrtps_cpp').mkdir()
        (tmp_path / 'share/rmw_fastrtps_cpp/package.xml').write_text(
            f'<package format="3"><name>rmw_fastrtps_cpp</name><version>{version}</version>'
        )
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert dds.profile_env_names() == names
    assert dds.profile_environ({}) == dict.fromkeys(names, str(installed))


def test_missing_profile_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    monkeypatch.setattr(sys, 'prefix', str(tmp_path / 'no-prefix'))
    monkeypatch.setattr(share, 'SOURCE_DIR', tmp_path / 'nowhere')
    with pytest.raises(ConfigError, match='fastdds_shm.xml'):
        dds.default_profile_path()


def test_profile_uses_large_shared_memory_plus_udp_by_default() -> None:
    root = ET.parse(dds.default_profile_path()).getroot()
    transports = {
        t.findtext('f:transport_id', namespaces=NS): t
        for t in root.iterfind('f:profiles/f:transport_descriptors/f:transport_descriptor', NS)
    }
    types = {tid: t.findtext('f:type', namespaces=NS) for tid, t in transports.items()}
    assert sorted(types.values()) == ['SHM', 'UDPv4']
    shm = next(t for t in transports.values() if t.findtext('f:type', namespaces=NS) == 'SHM')
    assert int(shm.findtext('f:segment_size', namespaces=NS)) == 32 * 1024 * 1024
    participant = root.find('f:profiles/f:participant', NS)
    assert participant.get('is_default_profile') == 'true'
    rtps = participant.find('f:rtps', NS)
    used = [e.text for e in rtps.iterfind('f:userTransports/f:transport_id', NS)]
    assert sorted(used) == sorted(transports)
    assert rtps.findtext('f:useBuiltinTransports', namespaces=NS) == 'false'

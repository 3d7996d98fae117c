"""dds: the shipped Fast DDS profile and how it is found (source tree or ament install)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from robo_lifelong import dds
from robo_lifelong.errors import ConfigError

NS = {'f': 'http://www.eprosima.com'}


def _fake_install(prefix: Path) -> Path:
    (prefix / 'share/ament_index/resource_index/packages').mkdir(parents=True)
    (prefix / 'share/ament_index/resource_index/packages/robo_lifelong').write_text('')
    config = prefix / 'share/robo_lifelong/config'
    config.mkdir(parents=True)
    (config / dds.PROFILE_NAME).write_text('<dds/>')
    return config / dds.PROFILE_NAME


def test_source_tree_profile_is_found_without_an_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    path = dds.default_profile_path()
    assert path == Path(dds.__file__).resolve().parents[1] / 'config' / 'fastdds_shm.xml'


def test_installed_profile_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = _fake_install(tmp_path)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    assert dds.default_profile_path() == installed
    assert dds.profile_environ({'A': 'b'}) == {'A': 'b', dds.PROFILES_ENV: str(installed)}


def test_missing_profile_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    monkeypatch.setattr(dds, '_SOURCE_CONFIG', tmp_path / 'nowhere')
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

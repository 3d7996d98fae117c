"""Test helper run as a subprocess: records the perception outputs and prints one JSON object.

It records until every ``--until`` condition holds and whatever it was asked to do is done, and
at least ``--seconds`` after the first message of any output; ``--timeout`` (plus ``--seconds``)
bounds the whole run, and ``unmet`` in the JSON then lists what never happened. No verdict hangs
on how fast a window of wall time was: the conditions are events (a version announced, labels of
a frame captured after some moment, a log line), so a loaded machine only makes a run longer.

Actions: install a package into the node's ``model_watch_dir`` the way the bridge does
(``--update PACKAGE --models-dir DIR``: ``ModelSync`` verifies it and writes the record the node
follows; once the probe heard the node and ``--update-after`` seconds passed, and with
``--update-after-version`` once it heard the version the update replaces), optionally holding
that load at the gate of tests/ros/gated_perception.py (``--gate DIR``, the installed copy's:
the probe opens it once labels of frames captured after the load reached it arrived); publish
bad input frames (``--inject-bad``), each case again until the node's log (``--node-log``) says
it was handled; publish a large frame (``--big-frame H W``) until its labels arrive; set
parameters (``--set``) and record the results.

Conditions (``--until``): a record key (``labels``, ``version``, ...: at least one message);
``version=V`` (the last version is V); ``levels=0,1,2,0`` (the alarm went through these levels in
this order, STALE left out); ``labels-after-injection=N`` (N labels of frames stamped after the
last action, or after the probe started); ``labels-after-version=N`` (after the last version
message arrived); ``alarm-samples`` (a sample an alarm listed was announced on unseen/sample);
``diag=TEXT`` (a perception node status whose message or model_error contains TEXT);
``alarm=TEXT`` (an alarm whose message contains TEXT: the node's first alarms may still be those
of its model loading, published before the condition under test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, Header, String
from visualization_msgs.msg import MarkerArray

from robo_lifelong.nodes.images import numpy_to_image
from robo_lifelong.nodes.perception_node import COLOR_TOPIC, DEPTH_TOPIC, NODE_STATUS_NAME
from robo_lifelong.nodes.qos import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS
from robo_lifelong.transfer.model_sync import ModelSync

# Deep reader queues: the DDS threads keep what arrives while this process waits for a core, so
# a loaded machine delays the records instead of losing them.
DEEP_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
STALE = 3
RETRY_S = 0.2  # a bad frame the node has not handled yet is sent again after this


def _stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _header(offset_ns: int = 0) -> Header:
    t = time.time_ns() + offset_ns
    h = Header(frame_id='camera_color_optical_frame')
    h.stamp.sec, h.stamp.nanosec = t // 1_000_000_000, t % 1_000_000_000
    return h


def _paired(rgb: Image) -> tuple[Image, Image]:
    """``rgb`` with a valid depth frame of its stamp, so the node pairs it at once instead of
    waiting for depth while the sim camera's next frame replaces it."""
    depth = numpy_to_image(np.full((120, 212), 1500, np.uint16), '16UC1', rgb.header)
    return rgb, depth


def _wrong_size() -> tuple[Image, Image]:
    msg = numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', _header())
    msg.width, msg.step = 300, 900  # the data no longer fits
    return _paired(msg)


def _with_depth(depth: np.ndarray, encoding: str) -> tuple[Image, Image]:
    h = _header()
    rgb = numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', h)
    return rgb, numpy_to_image(depth, encoding, h)


# case -> (builder of (rgb message, depth message or None), stamped when built; what the node
# logs once it handled the case). A bad frame may lose to a newer camera frame (the node keeps
# only the newest), so each case is sent again until its line is in the node's log.
BAD_INPUTS = {
    'wrong encoding': (
        lambda: _paired(numpy_to_image(np.zeros((120, 212), np.uint16), 'mono16', _header())),
        'mono16',
    ),
    'wrong size': (_wrong_size, 'image data has'),
    'empty data': (lambda: _paired(Image(header=_header(), encoding='rgb8')), 'empty image'),
    'nan depth': (
        lambda: _with_depth(np.full((120, 212), np.nan, np.float32), '32FC1'),
        'NaN',
    ),
    'depth of another size': (
        lambda: _with_depth(np.full((60, 100), 1000, np.uint16), '16UC1'),
        'does not match rgb',
    ),
    'out of order': (
        lambda: _paired(
            numpy_to_image(np.full((120, 212, 3), 90, np.uint8), 'rgb8', _header(-1_000_000_000))
        ),
        'not newer',
    ),
}


def _collapsed(levels: list[int]) -> list[int]:
    out: list[int] = []
    for level in levels:
        if level != STALE and (not out or out[-1] != level):
            out.append(level)
    return out


def _contains_in_order(seq: list[int], wanted: list[int]) -> bool:
    it = iter(seq)
    return all(any(x == w for x in it) for w in wanted)


class NodeLog:
    """The node's output files, read from where a case started."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = [Path(p) for p in paths]

    def sizes(self) -> list[int]:
        return [p.stat().st_size if p.exists() else 0 for p in self.paths]

    def since(self, offsets: list[int]) -> str:
        text = ''
        for path, offset in zip(self.paths, offsets, strict=True):
            if path.exists():
                with path.open('rb') as f:
                    f.seek(offset)
                    text += f.read().decode(errors='replace')
        return text


class Probe(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__('perception_probe', namespace=args.namespace)
        self.args = args
        self.record: dict[str, list] = {
            k: []
            for k in (
                'labels', 'overlay', 'score', 'alarm', 'sample', 'version', 'terrain', 'gait',
                'diagnostics', 'markers', 'injected', 'set', 'gate',
            )
        }  # fmt: skip
        self.first: float | None = None
        self.started = time.monotonic()
        self.started_ns = time.time_ns()
        self.create_subscription(Image, 'segmentation/labels', self._on_labels, DEEP_QOS)
        self.create_subscription(Image, 'segmentation/overlay', self._on_overlay, DEEP_QOS)
        self.create_subscription(Float32, 'unseen/score', self._on_score, DEEP_QOS)
        self.create_subscription(DiagnosticArray, 'alarm', self._on_alarm, LATCHED_QOS)
        self.create_subscription(String, 'unseen/sample', self._on_sample, RELIABLE_QOS)
        self.create_subscription(String, 'model/version', self._on_version, LATCHED_QOS)
        self.create_subscription(String, 'terrain', self._json('terrain'), DEEP_QOS)
        self.create_subscription(String, 'gait', self._json('gait'), DEEP_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, DEEP_QOS)
        self.create_subscription(MarkerArray, 'markers', self._on_markers, DEEP_QOS)
        self._rgb_pub = self.create_publisher(Image, COLOR_TOPIC, SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, DEPTH_TOPIC, SENSOR_QOS)
        self.updated = False
        self.gate = Path(args.gate) if args.gate else None
        self.log = NodeLog(args.node_log)
        self._bad_cases = list(BAD_INPUTS) if args.inject_bad else []
        self._bad_case: dict | None = None  # the case being sent: offsets, attempts, last send
        self._params = AsyncParameterClient(self, 'perception')
        self._pending_set = None

    # -- recording --------------------------------------------------------------------------

    def _seen(self) -> float:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        return now

    def _on_labels(self, msg: Image) -> None:
        labels = np.frombuffer(msg.data, np.uint8)
        self.record['labels'].append(
            {
                'arrival': self._seen(),
                'wall_ns': time.time_ns(),
                'stamp_ns': _stamp_ns(msg.header),
                'encoding': msg.encoding,
                'shape': [msg.height, msg.width],
                'max': int(labels.max()) if labels.size else -1,
            }
        )

    def _on_overlay(self, msg: Image) -> None:
        self.record['overlay'].append({'stamp_ns': _stamp_ns(msg.header), 'enc': msg.encoding})

    def _on_score(self, msg: Float32) -> None:
        self.record['score'].append({'arrival': self._seen(), 'score': msg.data})

    def _on_alarm(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.record['alarm'].append(
                {
                    **values,
                    'arrival': self._seen(),
                    'wall_ns': time.time_ns(),
                    'level': s.level[0],
                    'message': s.message,
                }
            )

    def _on_sample(self, msg: String) -> None:
        self.record['sample'].append(json.loads(msg.data))

    def _on_version(self, msg: String) -> None:
        self.record['version'].append(
            {'arrival': self._seen(), 'wall_ns': time.time_ns(), 'version': msg.data}
        )

    def _json(self, key: str):
        def callback(msg: String) -> None:
            self.record[key].append(json.loads(msg.data))

        return callback

    def _on_markers(self, msg: MarkerArray) -> None:
        self.record['markers'].append([m.text for m in msg.markers])

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            values = {kv.key: kv.value for kv in s.values}
            self.record['diagnostics'].append(
                {
                    **values,
                    'name': s.name,
                    'level': s.level[0],
                    'message': s.message,
                    'hardware_id': s.hardware_id,
                    'stamp_ns': _stamp_ns(msg.header),
                }
            )

    # -- conditions -------------------------------------------------------------------------

    def mark_ns(self) -> int:
        """Wall time of the last action (or of the start): later stamps are later frames."""
        injected = self.record['injected']
        return injected[-1]['wall_ns'] if injected else self.started_ns

    def labels_after(self, mark_ns: int) -> int:
        return sum(lb['stamp_ns'] > mark_ns for lb in self.record['labels'])

    def _holds(self, condition: str) -> bool:
        name, _, value = condition.partition('=')
        r = self.record
        if name == 'version':
            return bool(r['version']) and (not value or r['version'][-1]['version'] == value)
        if name == 'levels':
            wanted = [int(v) for v in value.split(',')]
            return _contains_in_order(_collapsed([a['level'] for a in r['alarm']]), wanted)
        if name == 'labels-after-injection':
            return self.labels_after(self.mark_ns()) >= int(value)
        if name == 'labels-after-version':
            return bool(r['version']) and self.labels_after(r['version'][-1]['wall_ns']) >= int(
                value
            )
        if name == 'alarm-samples':
            announced = {e['id'] for e in r['sample']}
            listed = {i for a in r['alarm'] for i in a.get('sample_ids', '').split(',') if i}
            return bool(announced & listed)
        if name == 'alarm' and value:
            return any(value in a['message'] for a in r['alarm'])
        if name == 'diag':
            return any(
                d['name'] == NODE_STATUS_NAME
                and (value in d['message'] or value in d.get('model_error', ''))
                for d in r['diagnostics']
            )
        return bool(r[name])

    def unmet(self) -> list[str]:
        out = [c for c in self.args.until if not self._holds(c)]
        if self.args.update and not self.updated:
            out.append('update sent')
        if self.gate is not None and len(self.record['gate']) < 2:
            out.append('gate opened')
        if self._bad_cases or self._bad_case is not None:
            out.append('bad inputs handled')
        if self.args.set:
            out.append('parameters set')
        if self.args.big_frame and not self.big_frame_labelled():
            out.append('big frame labelled')
        return out

    # -- actions ----------------------------------------------------------------------------

    def _set_parameters(self) -> None:
        """Send ``--set name=json`` once the node's parameter service is up; record results."""
        if self._pending_set is None and self._params.services_are_ready():
            params = [
                Parameter(name, value=json.loads(value))
                for name, value in (item.split('=', 1) for item in self.args.set)
            ]
            self._pending_set = (params, self._params.set_parameters(params))
        elif self._pending_set is not None and self._pending_set[1].done():
            params, future = self._pending_set
            for p, r in zip(params, future.result().results, strict=True):
                self.record['set'].append(
                    {'name': p.name, 'successful': r.successful, 'reason': r.reason}
                )
            self.args.set = []

    def big_frame_labelled(self) -> bool:
        return any(lb['shape'] == list(self.args.big_frame) for lb in self.record['labels'])

    def _publish_big_frame(self, now: float) -> None:
        """A 3840x2160 rgb8 frame every 0.5 s until its labels come back: a 25 MB best-effort
        message needs room in the shared-memory segment to arrive, so one send may be lost."""
        if self.big_frame_labelled():
            return
        height, width = self.args.big_frame
        if self.record['injected'] and now - self.record['injected'][-1]['arrival'] < 0.5:
            return
        y, x = np.mgrid[0:height, 0:width]
        frame = np.stack([x * 255 // width, y * 255 // height, (x // 64 + y // 64) % 2 * 200], 2)
        self._rgb_pub.publish(numpy_to_image(frame.astype(np.uint8), 'rgb8', _header()))
        self._inject({'case': 'big frame'}, now)

    def _inject(self, what: dict, now: float) -> None:
        self.record['injected'].append({**what, 'arrival': now, 'wall_ns': time.time_ns()})

    def _update(self, now: float) -> None:
        """Install the package as the bridge would, once ``--update-after`` passed."""
        if now - self.first >= self.args.update_after:
            ModelSync(self.args.update, self.args.models_dir).poll()
            self._inject({'update': self.args.update}, now)
            self.updated = True

    def _hold_gate(self, now: float) -> None:
        """Open the model loader's gate once labels of frames captured after the load reached it
        have arrived: the frame path went on while a model was half loaded."""
        gate = self.record['gate']
        if not gate and (self.gate / 'reached').exists():
            gate.append({'gate': 'reached', 'arrival': now, 'wall_ns': time.time_ns()})
        elif len(gate) == 1 and self.labels_after(gate[0]['wall_ns']) >= self.args.gate_labels:
            (self.gate / 'open').touch()
            gate.append({'gate': 'opened', 'arrival': now, 'wall_ns': time.time_ns()})
            self._inject({'gate': 'opened'}, now)

    def _inject_bad(self, now: float) -> None:
        case = self._bad_case
        if case is not None and BAD_INPUTS[case['case']][1] in self.log.since(case['offsets']):
            self._inject({'case': case['case'], 'attempts': case['attempts']}, now)
            self._bad_case = case = None
        if case is None:
            if not self._bad_cases:
                return
            name = self._bad_cases.pop(0)
            case = self._bad_case = {'case': name, 'offsets': self.log.sizes(), 'attempts': 0}
            case['sent'] = now - RETRY_S
        if now - case['sent'] >= RETRY_S:
            rgb, depth = BAD_INPUTS[case['case']][0]()
            if depth is not None:
                self._depth_pub.publish(depth)
            self._rgb_pub.publish(rgb)
            case['sent'] = now
            case['attempts'] += 1

    def step(self) -> None:
        now = time.monotonic()
        if self.args.big_frame and self.first is not None:
            self._publish_big_frame(now)
        if self.args.set:
            self._set_parameters()
        heard = self.record['version'] or not self.args.update_after_version
        if self.args.update and not self.updated and self.first is not None and heard:
            self._update(now)
        if self.gate is not None and self.updated:
            self._hold_gate(now)
        if self.args.inject_bad and self.record['labels']:
            self._inject_bad(now)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--seconds', type=float, required=True)
    parser.add_argument('--timeout', type=float, default=30.0)
    parser.add_argument('--until', action='append', default=[], help='condition, see above')
    parser.add_argument('--update', default='', help='package to install (--models-dir)')
    parser.add_argument('--models-dir', default='', help="the node's model_watch_dir")
    parser.add_argument('--update-after', type=float, default=0.0)
    # the latched version may arrive after the labels: a swap before it would hide the old one
    parser.add_argument('--update-after-version', action='store_true')
    parser.add_argument('--gate', default='', help='gate directory of the --update package')
    parser.add_argument('--gate-labels', type=int, default=3)
    parser.add_argument('--inject-bad', action='store_true')
    parser.add_argument('--node-log', action='append', default=[], help='the node output files')
    parser.add_argument('--big-frame', type=int, nargs=2, metavar=('HEIGHT', 'WIDTH'))
    parser.add_argument('--namespace', default='/')
    parser.add_argument('--set', action='append', default=[], help='name=json value')
    args = parser.parse_args()
    if args.inject_bad and not args.node_log:
        parser.error('--inject-bad needs --node-log')
    if args.update and not args.models_dir:
        parser.error('--update needs --models-dir')
    rclpy.init()
    node = Probe(args)
    deadline = node.started + args.timeout + args.seconds
    try:
        while True:
            rclpy.spin_once(node, timeout_sec=0.02)
            node.step()
            now = time.monotonic()
            if node.first is not None and now - node.first >= args.seconds and not node.unmet():
                break
            if now >= deadline:
                node.record['unmet'] = node.unmet()
                break
        print(json.dumps(node.record))
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

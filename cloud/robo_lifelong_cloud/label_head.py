"""The label head appended to the exported graph: ``labels`` = the argmax over classes of the
stride-8 logits resized bilinearly (half-pixel centres, torch's ``align_corners=False``) to any
requested size, computed exactly but without interpolating every class at every pixel.

Resizing all K class maps to 480x640 and arg-maxing them was most of the robot's CPU there (the
onnxruntime profiler put ArgMax and Resize at 20 of 24 ms with one thread, the network at ~3).
The head instead:

1. resizes the logits over the width only (h rows of the output width, 1/16 of the pixels);
2. looks at each *band column*: two neighbouring resized rows r, r+1 at one output column. Every
   output pixel between them is ``(1 - a) * row_r + a * row_r+1`` for all classes at once, so a
   class below some other class at both ends is below it everywhere between. The two ends' argmax
   classes j0, j1 therefore decide the pixel unless a third class is not beaten at both ends by
   j0 or by j1 (a few percent of the band columns on simulator frames);
3. for the other band columns compares only j0 and j1 (the lower id wins a tie, as ArgMax's first
   index does) along the output rows: a few operations per output pixel instead of K;
4. interpolates every class only at the band columns where a third class survives (NonZero,
   GatherND, ArgMax, ScatterND) and writes those labels over the two-class ones.

Same labels as the dense head up to rounding ties (tests/cloud/test_label_head.py, and
tests/core/test_runtime.py on a trained model's frames). The perception node at 480x640 spends a
third less CPU (bench_perception); the cost now depends on the scene, and the worst input found
(random 8-pixel colour blocks) takes 2.3x a simulator frame's time (bench_onnx). Built from ONNX
nodes (opset 17) rather than traced from torch, since a trace would freeze the sizes and the
data-dependent sparse step.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

_P = 'label_head/'  # prefix of every tensor the head adds


class _Graph:
    """Appends nodes and constants to ``graph`` under the head's prefix."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph

    def const(self, name: str, value: int | float | list[int], dtype: int) -> str:
        dims = [len(value)] if isinstance(value, list) else []
        values = value if isinstance(value, list) else [value]
        self.graph.initializer.append(helper.make_tensor(_P + name, dtype, dims, values))
        return _P + name

    def op(self, op_type: str, inputs: list[str], output: str | list[str], **attrs) -> str:
        outputs = [output] if isinstance(output, str) else output
        outputs = [_P + o for o in outputs]
        self.graph.node.append(helper.make_node(op_type, inputs, outputs, **attrs))
        return outputs[0]


def add_label_head(graph: onnx.GraphProto, logits: str, size: str, labels: str) -> None:
    """Append the nodes computing ``labels`` (N, H, W) uint8 from ``logits`` (N, K, h, w) and
    ``size`` = [H, W] (int64, a graph input the caller declares)."""
    g = _Graph(graph)
    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    axis = {k: g.const(f'axis{k}', [k], i64) for k in range(4)}
    zero, one = g.const('zero', 0, i64), g.const('one', 1, i64)
    zero_f, one_f = g.const('zero_f', 0.0, f32), g.const('one_f', 1.0, f32)
    two_i32 = g.const('two', 2, TensorProto.INT32)

    # shapes: n, k, h from the logits; H, W from the requested size
    nhwc = g.op('Transpose', [logits], 'nhwc', perm=[0, 2, 3, 1])
    shape = g.op('Shape', [logits], 'shape')
    n = g.op('Slice', [shape, axis[0], axis[1]], 'n')
    k = g.op('Slice', [shape, axis[1], axis[2]], 'k')
    h = g.op('Slice', [shape, axis[2], axis[3]], 'h')
    out_h = g.op('Slice', [size, axis[0], axis[1]], 'out_h')
    out_w = g.op('Slice', [size, axis[1], axis[2]], 'out_w')

    # 1. every logit row resized to the output width: rows (N, h, W, K)
    sizes_w = g.op('Concat', [n, h, out_w, k], 'sizes_w', axis=0)
    resize = {'mode': 'linear', 'coordinate_transformation_mode': 'half_pixel'}
    row0 = g.op('Resize', [nhwc, '', '', sizes_w], 'row0', **resize)
    # the band below each row: rows r and r + 1 (the last row pairs with itself)
    h_scalar = g.op('Squeeze', [h, axis[0]], 'h_scalar')
    below = g.op('Range', [one, h_scalar, one], 'below_rows')
    last = g.op('Sub', [h, axis[1]], 'last_row')
    nxt = g.op('Concat', [below, last], 'next_row', axis=0)
    row1 = g.op('Gather', [row0, nxt], 'row1', axis=1)

    # each output row's band and weight, as the resize places it: a ramp 0..h-1 resized to H
    ramp_i = g.op('Range', [zero, h_scalar, one], 'ramp_i')
    ramp_f = g.op('Cast', [ramp_i], 'ramp_f', to=f32)
    ramp = g.op('Reshape', [ramp_f, g.const('ramp_shape', [1, -1, 1, 1], i64)], 'ramp')
    sizes_h = g.op('Concat', [axis[1], out_h, axis[1], axis[1]], 'sizes_h', axis=0)
    coord4 = g.op('Resize', [ramp, '', '', sizes_h], 'coord4', **resize)
    coord = g.op('Reshape', [coord4, g.const('flat', [-1], i64)], 'coord')  # (H,)
    band_f = g.op('Floor', [coord], 'band_f')
    weight = g.op('Sub', [coord, band_f], 'weight')  # (H,) share of row r + 1
    band = g.op('Cast', [band_f], 'band', to=i64)  # (H,) the band of each output row
    a1 = g.op('Reshape', [weight, g.const('row_shape', [1, -1, 1], i64)], 'a1')  # (1, H, 1)
    a0 = g.op('Sub', [one_f, a1], 'a0')

    # 2. the ends' argmaxes, and the classes neither of them beats at both ends
    j0 = g.op('ArgMax', [row0], 'j0', axis=3, keepdims=1)  # (N, h, W, 1)
    j1 = g.op('Gather', [j0, nxt], 'j1', axis=1)
    survive = None
    for j in (j0, j1):
        at0 = g.op('GatherElements', [row0, j], f'row0_at_{j[len(_P) :]}', axis=3)
        at1 = g.op('GatherElements', [row1, j], f'row1_at_{j[len(_P) :]}', axis=3)
        not0 = g.op('GreaterOrEqual', [row0, at0], f'ge0_{j[len(_P) :]}')
        not1 = g.op('GreaterOrEqual', [row1, at1], f'ge1_{j[len(_P) :]}')
        unbeaten = g.op('Or', [not0, not1], f'unbeaten_by_{j[len(_P) :]}')
        survive = unbeaten if survive is None else g.op('And', [survive, unbeaten], 'survive')
    survivors = g.op('Cast', [survive], 'survive_i32', to=TensorProto.INT32)
    count = g.op('ReduceSum', [survivors, axis[3]], 'count', keepdims=0)  # (N, h, W)

    # 3. two candidates: the higher id takes the pixel where its interpolated margin is > 0
    lo = g.op('Min', [j0, j1], 'lo')
    hi = g.op('Max', [j0, j1], 'hi')
    margins = []
    for end, row in (('0', row0), ('1', row1)):
        at_lo = g.op('GatherElements', [row, lo], f'lo_at{end}', axis=3)
        at_hi = g.op('GatherElements', [row, hi], f'hi_at{end}', axis=3)
        margin = g.op('Sub', [at_hi, at_lo], f'margin_at{end}')
        margin = g.op('Squeeze', [margin, axis[3]], f'margin{end}')  # (N, h, W)
        margins.append(g.op('Gather', [margin, band], f'margin{end}_rows', axis=1))
    margin = g.op(
        'Add',
        [g.op('Mul', [margins[0], a0], 'margin0_w'), g.op('Mul', [margins[1], a1], 'margin1_w')],
        'margin',
    )
    take_hi = g.op('Greater', [margin, zero_f], 'take_hi')
    picks = []
    for name, ids in (('lo', lo), ('hi', hi)):
        ids_u8 = g.op('Cast', [ids], f'{name}_u8', to=TensorProto.UINT8)
        ids_u8 = g.op('Squeeze', [ids_u8, axis[3]], f'{name}_u8_s')
        picks.append(g.op('Gather', [ids_u8, band], f'{name}_rows', axis=1))
    two_class = g.op('Where', [take_hi, picks[1], picks[0]], 'two_class')  # (N, H, W)

    # 4. every class, where a third one survives (only bands that hold an output row)
    band_row = g.op('Unsqueeze', [band, axis[0]], 'band_row')  # (1, H)
    band_col = g.op('Unsqueeze', [ramp_i, axis[1]], 'band_col')  # (h, 1)
    in_band = g.op('Cast', [g.op('Equal', [band_row, band_col], 'in_band_b')], 'in_band', to=i64)
    before = g.op('Cast', [g.op('Less', [band_row, band_col], 'before_b')], 'before', to=i64)
    rows = g.op('ReduceSum', [in_band, axis[1]], 'rows', keepdims=0)  # (h,) rows in each band
    first = g.op('ReduceSum', [before, axis[1]], 'first', keepdims=0)  # (h,) its first row
    s_held = g.const('held_shape', [1, -1, 1], i64)
    held = g.op('Reshape', [g.op('Greater', [rows, zero], 'held_h'), s_held], 'held')  # (1, h, 1)
    three = g.op('Greater', [count, two_i32], 'three_survive')
    where = g.op('NonZero', [g.op('And', [three, held], 'complex')], 'where')  # (3, F)
    at = g.op('Transpose', [where], 'at', perm=[1, 0])  # (F, 3): n, band, column
    full0 = g.op('GatherND', [row0, at], 'full0')  # (F, K)
    full1 = g.op('GatherND', [row1, at], 'full1')
    # the output rows of each such band column: first .. first + rows - 1, padded to the widest
    # band by repeating its last row (writing the same label twice is harmless)
    offsets = g.op('Range', [zero, g.op('ReduceMax', [rows], 'widest', keepdims=0), one], 'offs')
    last_offset = g.op('Sub', [g.op('Unsqueeze', [rows, axis[1]], 'rows_col'), one], 'last_off')
    offset = g.op('Min', [g.op('Unsqueeze', [offsets, axis[0]], 'offs_row'), last_offset], 'off')
    table = g.op('Add', [g.op('Unsqueeze', [first, axis[1]], 'first_col'), offset], 'table')
    f_n, f_band, f_x = (
        g.op('Gather', [where, g.const(f'part{i}', i, i64)], f'f_{name}', axis=0)  # (F,)
        for i, name in enumerate(('n', 'band', 'x'))
    )
    f_rows = g.op('Gather', [table, f_band], 'f_rows', axis=0)  # (F, R) output rows
    f_a1 = g.op('Unsqueeze', [g.op('Gather', [weight, f_rows], 'f_w'), axis[2]], 'f_a1')
    f_a0 = g.op('Sub', [one_f, f_a1], 'f_a0')  # (F, R, 1)
    f_w0 = g.op('Mul', [g.op('Unsqueeze', [full0, axis[1]], 'full0_3'), f_a0], 'full0_w')
    f_w1 = g.op('Mul', [g.op('Unsqueeze', [full1, axis[1]], 'full1_3'), f_a1], 'full1_w')
    values = g.op('Add', [f_w0, f_w1], 'full')  # (F, R, K)
    best = g.op('ArgMax', [values], 'full_best', axis=2, keepdims=0)
    best_u8 = g.op('Cast', [best], 'full_best_u8', to=TensorProto.UINT8)  # (F, R)
    zeros = g.op('Mul', [f_rows, zero], 'f_zeros')  # (F, R)

    def spread(part: str, name: str) -> str:  # (F,) -> (F, R, 1), the same value on each row
        col = g.op('Unsqueeze', [part, axis[1]], f'{name}_col')
        return g.op('Unsqueeze', [g.op('Add', [zeros, col], f'{name}_fr'), axis[2]], f'{name}_i')

    y = g.op('Unsqueeze', [f_rows, axis[2]], 'y_i')
    scatter_at = g.op('Concat', [spread(f_n, 'n'), y, spread(f_x, 'x')], 'at_nyx', axis=2)
    graph.node.append(helper.make_node('ScatterND', [two_class, scatter_at, best_u8], [labels]))

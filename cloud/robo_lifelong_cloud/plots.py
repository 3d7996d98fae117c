"""PNG pictures written next to a model package: the training curve and the metrics chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # headless workers: never pick an interactive backend

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
import numpy as np  # noqa: E402

_CANDIDATE, _DEPLOYED = '#1f77b4', '#bbbbbb'


def _x_axis(history: list[dict]) -> tuple[str, list[float]]:
    for key in ('iteration', 'epoch'):
        if all(key in h for h in history):
            return key, [h[key] for h in history]
    return 'step', list(range(len(history)))


def _series(history: list[dict], xs: list[float], key: str) -> tuple[list, list]:
    pairs = [(x, h[key]) for x, h in zip(xs, history, strict=True) if h.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def training_curve(history: list[dict], path: str | Path) -> Path:
    """Loss (``loss``, and ``val_loss`` if logged) and validation mIoU (``val_miou``) against
    ``iteration`` or ``epoch`` (whichever every entry has). Entries may lack the val keys."""
    if not history:
        raise ValueError('training history is empty')
    xlabel, xs = _x_axis(history)
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for key, style in (('loss', '-'), ('val_loss', '--')):
        x, y = _series(history, xs, key)
        if y:
            ax_loss.plot(x, y, style, label=key.replace('_', ' '))
    ax_loss.set(xlabel=xlabel, ylabel='loss', title='Training loss')
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    x, y = _series(history, xs, 'val_miou')
    if y:
        ax_miou.plot(x, y, 'o-', color='tab:green')
    ax_miou.set(xlabel=xlabel, ylabel='mIoU', title='Validation mIoU', ylim=(0.0, 1.0))
    ax_miou.grid(alpha=0.3)
    return _save(fig, path)


def _bars(ax, names: list[str], values: dict, baseline: dict | None, title: str) -> None:
    pos = np.arange(len(names))
    width = 0.4 if baseline is not None else 0.8
    cand = [values.get(n, 0.0) for n in names]
    if baseline is not None:
        dep = [baseline.get(n, 0.0) for n in names]
        ax.bar(pos - width / 2, dep, width, color=_DEPLOYED, label='deployed')
        ax.bar(pos + width / 2, cand, width, color=_CANDIDATE, label='candidate')
        ax.legend(loc='upper right', ncol=2, fontsize='small')
    else:
        ax.bar(pos, cand, width, color=_CANDIDATE)
    ax.set_xticks(pos, names, rotation=45, ha='right')
    ax.set(ylim=(0.0, 1.15), ylabel='IoU', title=title)  # headroom for the legend
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.grid(axis='y', alpha=0.3)


def metrics_chart(report: dict, path: str | Path, deployed: dict | None = None) -> Path:
    """Per-task mIoU and per-class IoU bars of ``report`` (``metrics.iou_report``), side by side
    with the deployed model's report when given."""
    tasks = sorted(set(report['per_task']) | set(deployed['per_task'] if deployed else ()))
    task_miou = {t: r['miou'] for t, r in report['per_task'].items()}
    dep_miou = {t: r['miou'] for t, r in deployed['per_task'].items()} if deployed else None
    classes = list(report['per_class'])
    if deployed:
        classes += [c for c in deployed['per_class'] if c not in report['per_class']]
    fig, (ax_task, ax_cls) = plt.subplots(
        1,
        2,
        figsize=(4 + 0.5 * len(tasks) + 0.35 * len(classes), 4.5),
        gridspec_kw={'width_ratios': [max(len(tasks), 2), max(len(classes), 2)]},
        constrained_layout=True,
    )
    overall = f'overall mIoU {report["miou"]:.3f}'
    if deployed:
        overall += f' (deployed {deployed["miou"]:.3f})'
    fig.suptitle(overall)
    _bars(ax_task, tasks, task_miou, dep_miou, 'Per task')
    _bars(
        ax_cls,
        classes,
        report['per_class'],
        deployed['per_class'] if deployed else None,
        'Per class (all tasks)',
    )
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

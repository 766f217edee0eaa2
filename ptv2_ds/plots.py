"""Plots of a sweep's summary (matplotlib, the optional extra ``plots``): the best dev score
against one grid option, one line per value of another, mean ± sample std over seeds as
error bars (Figure 3 / Figure 4 style)."""
from __future__ import annotations

import textwrap
from pathlib import Path


def _number(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def series_points(rows: list[dict], x: str, series: str | None
                  ) -> dict[str, list[tuple[object, float, float]]]:
    """{series value: [(x value, mean, std), ...]} over the finished rows (status done), x in
    ascending order when every x value is a number, else in first-seen order. ``std`` is the
    sample standard deviation over the rows sharing (series, x), 0 for one row."""
    from .sweep import mean_std

    cells: dict[str, dict[object, list[float]]] = {}
    for row in rows:
        if row.get("status") != "done" or row.get("best") is None or row.get(x) in (None, ""):
            continue
        name = str(row.get(series)) if series else "all runs"
        cells.setdefault(name, {}).setdefault(row[x], []).append(float(row["best"]))
    numeric = all(_number(v) is not None for c in cells.values() for v in c)
    out = {}
    for name, by_x in cells.items():
        xs = sorted(by_x, key=lambda v: _number(v)) if numeric else list(by_x)
        points = []
        for value in xs:
            mean, std = mean_std(by_x[value])
            points.append((_number(value) if numeric else str(value), mean, std or 0.0))
        out[name] = points
    return out


def plot_summary(rows: list[dict], *, x: str, series: str | None, out: str | Path,
                 metric: str | None = None, title: str = "") -> Path:
    """Write a PNG of the best dev score (y) against ``x``, one line per ``series`` value."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    points = series_points(rows, x, series)
    metrics = sorted({str(r.get("metric")) for r in rows if r.get("status") == "done"})
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    categorical = any(isinstance(p[0], str) for pts in points.values() for p in pts)
    labels: list[str] = []
    if categorical:  # shared category positions across series
        labels = list(dict.fromkeys(p[0] for pts in points.values() for p in pts))
    for name, pts in points.items():
        xs = [labels.index(p[0]) if categorical else p[0] for p in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=f"{series} = {name}" if series else name)
    if categorical:
        ax.set_xticks(range(len(labels)), labels)
    elif all(float(p[0]).is_integer() for pts in points.values() for p in pts):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # lengths, layer counts
    ax.set_xlabel(x)
    ax.set_ylabel(f"best dev {metric or ', '.join(metrics) or 'score'}")
    if title:  # wrapped to the figure's width (about 60 characters at this size)
        ax.set_title("\n".join(textwrap.wrap(title, 60)))
    ax.grid(alpha=0.3)
    if points:
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out

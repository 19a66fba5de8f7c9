"""Figures of the experiments, in the style of the papers' figures.

Every function takes the experiment's DataFrame, returns a matplotlib Figure and saves
it to ``path`` when given. Bands are one standard deviation over repeats/subspaces. The
Figures are plain ``matplotlib.figure.Figure`` objects (see ``goldisk._mpl``): pyplot's
figure registry and backend are left alone.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._mpl import pyplot_free

__all__ = [
    "plot_sweep_norms",
    "plot_subspace_train",
    "plot_select",
    "plot_select_slopes",
    "plot_trajectory",
]

_R_LABEL = r"radius ratio $r / r_{\mathrm{ref}}$ (dimensionless)"


def _save(fig, path, dpi=90, title=None):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _labels(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Label an axis and show its legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def _band(ax, grp: pd.DataFrame, x: str, y: str, log: bool = False, **kw):
    """Mean of ``y`` against ``x`` with a one-sigma band (std over the group's rows).

    ``log=True`` takes mean and standard deviation of ``log10 y`` (positive values only),
    the natural band on a log axis.
    """
    vals = grp[[x, y]].copy()
    if log:
        v = vals[y].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            vals[y] = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    stats = vals.groupby(x)[y].agg(["mean", "std"])
    xs, m, sd = stats.index.to_numpy(float), stats["mean"].to_numpy(), stats["std"].fillna(0)
    lo, hi = m - sd.to_numpy(), m + sd.to_numpy()
    if log:
        m, lo, hi = 10**m, 10**lo, 10**hi
    (line,) = ax.plot(xs, m, **kw)
    ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


# ------------------------------------------------------------------ sweep
def plot_sweep_norms(df: pd.DataFrame, path=None, title=None):
    """Fort Fig. 5b: ``Tr(H)/r`` and ``||H||_F/r`` against the radius for each subspace
    dimension (log axes, one-sigma bands in log space; negative traces are not drawn)."""
    plt = pyplot_free()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    df = df.assign(tr_r=df["trace"] / df["radius"], fr_r=df["frobenius"] / df["radius"])
    for j, (d, grp) in enumerate(df.groupby("dim")):
        c = colors[j % len(colors)]
        _band(ax, grp, "radius_ratio", "tr_r", log=True, color=c, label=rf"Tr$(H)/r$, d = {d}")
        _band(ax, grp, "radius_ratio", "fr_r", log=True, color=c, ls="--",
              label=rf"$\|H\|_F/r$, d = {d}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(1.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel(_R_LABEL)
    ax.set_ylabel(r"curvature / radius (nats per unit$^3$)")
    ax.set_title(title or "trace and Frobenius norm of H over r (Fort Fig. 5b)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


# ------------------------------------------------------------------ subspace-train
def plot_subspace_train(df: pd.DataFrame, dint: pd.DataFrame | None = None, path=None,
                        title: str | None = None):
    """Fort Fig. 2: contours of validation accuracy over (r, d) for hyperplanes and
    hyperspheres; accuracy against r for each d; intrinsic dimension against r."""
    plt = pyplot_free()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    sub = df[df["kind"] != "full"]
    levels = np.linspace(0, 1, 11)
    cs = None
    for ax, kind in zip(axes[0], ("hyperplane", "hypersphere"), strict=True):
        grid = sub[sub["kind"] == kind].pivot_table(index="dim", columns="radius_ratio",
                                                    values="val_acc", aggfunc="mean")
        ax.set_xscale("log")
        ax.set_yscale("log")
        if grid.shape[0] >= 2 and grid.shape[1] >= 2:
            R, Dm = np.meshgrid(grid.columns.to_numpy(float), grid.index.to_numpy(float))
            cs = ax.contourf(R, Dm, grid.to_numpy(), levels=levels, cmap="viridis")
            ax.contour(R, Dm, grid.to_numpy(), levels=[0.5, 0.8, 0.9], colors="w",
                       linewidths=0.8, linestyles=["--", "-.", "-"])
        elif not grid.empty:
            R, Dm = np.meshgrid(grid.columns.to_numpy(float), grid.index.to_numpy(float))
            cs = ax.scatter(R.ravel(), Dm.ravel(), c=grid.to_numpy().ravel(), vmin=0, vmax=1,
                            cmap="viridis", s=80)
        ax.axvline(1.0, color="r", ls="--", lw=1, label=r"$r_{\mathrm{ref}}$")
        ax.set_xlabel(_R_LABEL)
        ax.set_ylabel("subspace dimension d")
        ax.set_title(f"{kind}s: validation accuracy (white: 0.5, 0.8, 0.9)")
        ax.legend(loc="lower right")
    ax = axes[1, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, d in enumerate(sorted(sub["dim"].unique())):
        for kind, ls in (("hyperplane", "-"), ("hypersphere", "--")):
            grp = sub[(sub["dim"] == d) & (sub["kind"] == kind)]
            if not grp.empty:
                _band(ax, grp, "radius_ratio", "val_acc", color=colors[j % len(colors)], ls=ls,
                      marker="o", ms=3, label=f"{kind}, d = {d}")
    full = df[df["kind"] == "full"]
    if not full.empty:
        _band(ax, full, "radius_ratio", "val_acc", color="k", lw=2, marker="s", ms=3,
              label=f"full space, D = {int(full['dim'].iloc[0])}")
    ax.set_xscale("log")
    ax.set_xlabel(_R_LABEL)
    ax.set_ylabel("validation accuracy (fraction)")
    ax.axvline(1.0, color="r", ls="--", lw=1)
    ax.set_title("accuracy against radius (solid: hyperplane, dashed: hypersphere)")
    from matplotlib.lines import Line2D

    dims_all = sorted(sub["dim"].unique())
    handles = [Line2D([], [], color=colors[j % len(colors)], label=f"d = {d}")
               for j, d in enumerate(dims_all)]
    handles += [Line2D([], [], color="gray", ls="-", label="hyperplane"),
                Line2D([], [], color="gray", ls="--", label="hypersphere")]
    if not full.empty:
        handles.append(Line2D([], [], color="k", lw=2, marker="s", ms=3,
                              label=f"full space, D = {int(full['dim'].iloc[0])}"))
    ax.legend(handles=handles, fontsize=7, ncol=2, framealpha=0.8)
    ax = axes[1, 1]
    if dint is not None and not dint.empty:
        top = float(sub["dim"].max()) * 1.25 if not sub.empty else 1.0
        for k, ((kind, rel, thr), grp) in enumerate(dint.groupby(["kind", "relative",
                                                                  "threshold"])):
            grp = grp.sort_values("radius_ratio")
            lab = (f"{kind}, {thr:g} x baseline" if rel else f"{kind}, accuracy {thr:g}")
            (line,) = ax.plot(grp["radius_ratio"], grp["d_int"], marker="o",
                              ls="-" if kind == "hyperplane" else "--", label=lab)
            miss = grp[~grp["reached"].astype(bool)]
            ax.plot(miss["radius_ratio"], np.full(len(miss), top * 1.08**k), ls="none",
                    marker="^", ms=7, mfc="none", mew=1.5, color=line.get_color())
        ax.axhline(top, color="gray", lw=0.5, ls=":")
        from matplotlib.lines import Line2D

        # the "not reached" row is a labelled tick above the measured dimensions, and its
        # marker has a legend entry (no free-floating note over the curves)
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], ls="none", marker="^", mfc="none", mew=1.5,
                              color="gray", label="not reached at the largest d"))
        ax.legend(handles=handles, fontsize=8, loc="lower right", framealpha=0.8)
        ax.set_yscale("log")
        dims_all = sorted(int(d) for d in sub["dim"].unique())
        ax.set_yticks([*dims_all, top * 1.04], [*map(str, dims_all), "not\nreached"])
        ax.minorticks_off()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axvline(1.0, color="r", ls="--", lw=1)
    ax.set_xlabel(_R_LABEL)
    ax.set_ylabel(r"intrinsic dimension $d_{\mathrm{int}}$")
    ax.set_title("intrinsic dimension against radius")
    if title:
        fig.suptitle(title)
    fig.set_layout_engine("none")
    fig.subplots_adjust(left=0.07, right=0.9, top=0.92 if title else 0.95, bottom=0.07,
                        hspace=0.3, wspace=0.25)
    if cs is not None:
        box = axes[0, 1].get_position()
        cax = fig.add_axes([0.915, box.y0, 0.012, box.height])
        fig.colorbar(cs, cax=cax, label="validation accuracy (fraction)")
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


# ------------------------------------------------------------------ select
_MEASURE_LABELS = {
    "trace_ratio": r"$\mathrm{Tr}(H)/\|H\|_F$ at init",
    "frac_positive": "fraction of positive eigenvalues at init",
    "trace": r"$\mathrm{Tr}(H)$ at init (nats)",
    "init_loss": "initial validation loss (nats)",
}


def plot_select(df: pd.DataFrame, analysis: pd.DataFrame, path=None, title=None,
                measures=("trace_ratio", "frac_positive", "init_loss")):
    """Fort Fig. 6: accuracy at each epoch against each measure with least-squares lines
    (slope and 95% CI in the legend), and the initial loss against the fraction of
    positive eigenvalues."""
    plt = pyplot_free()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    epochs = sorted(e for e in df["epoch"].unique() if e > 0)
    cmap = plt.get_cmap("viridis")
    for ax, m in zip(axes.ravel()[:3], measures, strict=False):
        for j, e in enumerate(epochs):
            grp = df[df["epoch"] == e]
            c = cmap(j / max(1, len(epochs) - 1))
            ax.scatter(grp[m], grp["val_acc"], s=10, color=c, alpha=0.7)
            fit = analysis[(analysis["epoch"] == e) & (analysis["measure"] == m)]
            if not fit.empty and math.isfinite(fit["slope"].iloc[0]):
                f = fit.iloc[0]
                xs = np.linspace(grp[m].min(), grp[m].max(), 10)
                ax.plot(xs, grp["val_acc"].mean() + f["slope"] * (xs - grp[m].mean()), color=c,
                        label=f"epoch {e}: slope {f['slope']:.3g} "
                              f"[{f['ci_low']:.2g}, {f['ci_high']:.2g}]")
        ax.set_xlabel(_MEASURE_LABELS.get(m, m))
        ax.set_ylabel("validation accuracy (fraction)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title="least squares, 95% CI", title_fontsize=7)
    ax = axes[1, 1]
    first = df.drop_duplicates("init")
    ax.scatter(first["frac_positive"], first["init_loss"], s=12)
    from scipy import stats

    ok = np.isfinite(first["frac_positive"]) & np.isfinite(first["init_loss"])
    if (ok.sum() >= 3 and np.ptp(first["frac_positive"][ok]) > 0
            and np.ptp(first["init_loss"][ok]) > 0):
        r = stats.pearsonr(first["frac_positive"][ok], first["init_loss"][ok])
        ax.set_title(f"Pearson r = {r.statistic:.2f} (p = {r.pvalue:.2g}), n = {int(ok.sum())}")
    ax.set_xlabel(_MEASURE_LABELS["frac_positive"])
    ax.set_ylabel(_MEASURE_LABELS["init_loss"])
    fig.suptitle(title or "Selecting initializations by curvature or loss (Fort Fig. 6)")
    return _save(fig, path)


def plot_select_slopes(analysis: pd.DataFrame, path=None, title=None):
    """Slope per standard deviation of each measure (95% CI) and the best-quarter minus
    rest accuracy difference against the epoch."""
    plt = pyplot_free()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for k, (m, grp) in enumerate(analysis[analysis["epoch"] > 0].groupby("measure")):
        grp = grp.sort_values("epoch")
        sd = grp["slope_per_sd"] / grp["slope"]
        x = grp["epoch"] + 0.06 * (k - 1.5)
        axes[0].errorbar(x, grp["slope_per_sd"], yerr=[(grp["slope"] - grp["ci_low"]) * sd,
                                                        (grp["ci_high"] - grp["slope"]) * sd],
                         marker="o", capsize=3, label=m)
        if "diff" in grp:
            axes[1].plot(x, grp["diff"], marker="o", label=m)
            for xi, di, p in zip(x, grp["diff"], grp["p_welch"], strict=True):
                if math.isfinite(p) and p < 0.05:
                    axes[1].annotate("*", (xi, di), ha="center", va="bottom")
    axes[0].axhline(0, color="gray", lw=0.8)
    _labels(axes[0], "epoch", "change of accuracy per 1 s.d. of the measure (fraction)",
            "least-squares slope, 95% CI")
    axes[1].axhline(0, color="gray", lw=0.8)
    _labels(axes[1], "epoch", "best quarter minus rest: accuracy (fraction)",
            "selection by the measure (* Welch p < 0.05, uncorrected)")
    return _save(fig, path, title=title)


# ------------------------------------------------------------------ trajectory
def plot_trajectory(df: pd.DataFrame, fits: pd.DataFrame | None = None, path=None, title=None):
    """Chang: radius against training time from several initial radii (free and fixed),
    radius against sqrt(steps) with the fitted lines, final accuracy against r0."""
    plt = pyplot_free()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ratios = sorted(df["radius_ratio"].unique())
    cmap = plt.get_cmap("plasma")
    for j, ratio in enumerate(ratios):
        c = cmap(j / max(1, len(ratios) - 1) * 0.9)
        for mode, ls in (("free", "-"), ("fixed", ":")):
            g = df[(df["radius_ratio"] == ratio) & (df["mode"] == mode)]
            if g.empty:
                continue
            _band(axes[0], g, "epoch", "radius_over_ref", color=c, ls=ls,
                  label=f"$r_0$ = {ratio:g} $r_{{ref}}$" if mode == "free" else None)
            if mode == "free" and ratio < 1:
                _band(axes[1], g, "step", "radius", color=c, marker=".", ms=3, ls="none")
                if fits is not None and not fits.empty:
                    f = fits[fits["radius_ratio"] == ratio]
                    if not f.empty:
                        t = np.linspace(0, g["step"].max(), 100)
                        axes[1].plot(t, f["a"].mean() + f["b"].mean() * np.sqrt(t), color=c,
                                     label=f"{ratio:g}: $R^2$ = {f['r2_sqrt'].mean():.3f}")
    free = df[(df["mode"] == "free") & (df["radius_ratio"] == ratios[0])]
    if not free.empty and ratios[0] < 1 and str(free["optimizer"].iloc[0]) == "adam":
        t = np.linspace(0, free["step"].max(), 100)
        r0 = float(free.sort_values("step")["radius"].iloc[0])
        walk = np.sqrt(r0**2 + float(free["D"].iloc[0]) * float(free["lr"].iloc[0]) ** 2 * t)
        axes[1].plot(t, walk, color="gray", ls="--",
                     label=r"random walk $\sqrt{r_0^2 + D\,\mathrm{lr}^2 t}$")
    axes[0].set_yscale("log")
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(r"radius $r / r_{\mathrm{ref}}$ (solid: free, dotted: fixed)")
    axes[0].legend(fontsize=7)
    axes[0].set_title("radius during training")
    axes[1].set_xscale("function", functions=(np.sqrt, np.square))
    axes[1].set_xlabel(r"training steps $t$ (axis in $\sqrt{t}$)")
    axes[1].set_ylabel("radius r (parameter-space units)")
    axes[1].set_title(r"free runs from $r_0 < r_{\mathrm{ref}}$, fits $r = a + b\sqrt{t}$")
    axes[1].legend(fontsize=7)
    last = df.sort_values("step").groupby(["mode", "repeat", "radius_ratio"]).tail(1)
    for mode, ls in (("free", "-"), ("fixed", ":")):
        g = last[last["mode"] == mode]
        if not g.empty:
            _band(axes[2], g, "radius_ratio", "val_acc", ls=ls, marker="o",
                  label="radius free" if mode == "free" else "radius held fixed")
    axes[2].set_xscale("log")
    axes[2].axvline(1.0, color="k", ls="--", lw=0.8)
    _labels(axes[2], r"initial radius $r_0 / r_{\mathrm{ref}}$",
            "final validation accuracy (fraction)", "accuracy at the end of training")
    return _save(fig, path, title=title)

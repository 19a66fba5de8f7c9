"""Figures of the ``decompose`` experiment (Vysogorets et al.), in the style of
``goldisk.experiments._plots`` (same helpers, plain Figures)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._mpl import pyplot_free
from ._decompose import spearman
from ._plots import _band, _save

__all__ = ["plot_decompose_curvature", "plot_decompose_inits", "plot_decompose_training"]


# ------------------------------------------------------------------ decompose
def plot_decompose_curvature(df: pd.DataFrame, path=None, title=None):
    """Vysogorets: trace ratio of H, G and the H-term, their Frobenius norms, against the
    scale alpha; the trace ratio against the softmax temperature on the same axis
    ``T = alpha^-L``; loss, confidence and gradients against alpha."""
    plt = pyplot_free()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    sc = df[df["part"] == "scale"]
    tp = df[df["part"] == "temperature"]
    L = int(sc["depth"].iloc[0]) if not sc.empty else int(tp["depth"].iloc[0])
    for pre, lab in (("", "H"), ("g_", "G (Gauss-Newton)"), ("h_", "H-term = H - G")):
        if not sc.empty:
            _band(axes[0, 0], sc, "alpha", pre + "trace_ratio", label=lab)
            _band(axes[0, 1], sc, "alpha", pre + "frobenius", log=True,
                  label=r"$\|$" + lab + r"$\|_F$")
    axes[0, 0].axhline(0, color="gray", lw=0.8)
    axes[0, 0].set_ylabel(r"$\mathrm{Tr}/\|\cdot\|_F$ on the subspace")
    axes[0, 0].set_title("positive curvature comes from G")
    axes[0, 1].set_yscale("log")
    if not sc.empty:
        norms = sc[["frobenius", "g_frobenius", "h_frobenius"]].to_numpy(float).ravel()
        norms = norms[np.isfinite(norms) & (norms > 0)]
        if norms.size:
            axes[0, 1].set_ylim(max(norms.min(), norms.max() * 1e-20) / 3, norms.max() * 3)
    axes[0, 1].set_ylabel(r"Frobenius norm on the subspace (nats per unit$^2$)")
    axes[0, 1].set_title("norms of the Gauss-Newton split")
    ax = axes[1, 0]
    if not sc.empty:
        s2 = sc.assign(T=sc["alpha"] ** (-L))
        _band(ax, s2, "T", "trace_ratio", lw=3, alpha=0.5,
              label=rf"scale $\alpha$ at $T = \alpha^{{-{L}}}$")
    if not tp.empty:
        _band(ax, tp, "temperature", "trace_ratio", ls="--", color="k",
              label=r"temperature T at $\alpha = 1$")
    ax.set_xscale("log")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("softmax temperature T (dimensionless)")
    ax.set_ylabel(r"$\mathrm{Tr}(H)/\|H\|_F$")
    homog = bool(df["homogeneous"].iloc[0]) if "homogeneous" in df else False
    ax.set_title("temperature recreates the zone" + ("" if homog else " (not homogeneous!)"))
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    if not sc.empty:
        n_classes = int(round(1.0 / sc["confidence"].min())) if sc["confidence"].min() > 0 else 0
        norm = math.log(n_classes) if n_classes > 1 else 1.0
        sc = sc.assign(norm_entropy=sc["entropy"] / norm)
        for col, lab in (("confidence", "confidence (mean max softmax prob.)"),
                         ("norm_entropy", f"entropy / ln {n_classes}"),
                         ("logit_grad_norm", r"mean $\|\partial\ell/\partial z\|$"),
                         ("mean_logit_grad_norm", r"$\|$dataset-mean $\partial\ell/\partial z\|$")):
            _band(ax, sc, "alpha", col, label=lab)
        twin = ax.twinx()
        _band(twin, sc, "alpha", "loss", log=True, color="k", ls="--", label="loss")
        twin.set_yscale("log")
        twin.set_ylabel("loss (nats, dashed black)")
    ax.set_ylabel("model state (fraction, normalized, or per sample)")
    ax.set_title("state of the model")
    for a in (axes[0, 0], axes[0, 1], axes[1, 1]):
        a.set_xscale("log")
        a.set_xlabel(r"scale $\alpha$ of the He init (dimensionless)")
        a.axvline(1.0, color="gray", ls=":", lw=0.8)
        a.legend(fontsize=7, loc="center left")
    fig.suptitle(title or "Deconstructing the Goldilocks zone: Gauss-Newton split")
    return _save(fig, path)


def plot_decompose_inits(df: pd.DataFrame, path=None, title=None):
    """Confidence, entropy, logit-gradient norm and initial loss against the trace ratio
    across random inits (colour: log10 alpha), with Spearman correlations."""
    plt = pyplot_free()
    d = df[df["part"] == "inits"]
    cols = (("confidence", "confidence (max softmax prob.)"),
            ("entropy", "output entropy (nats)"),
            ("mean_logit_grad_norm", r"$\|$dataset-mean $\partial\ell/\partial z\|$"),
            ("loss", "initial loss (nats)"))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4))
    sc = None
    for ax, (col, lab) in zip(axes, cols, strict=True):
        sc = ax.scatter(d["trace_ratio"], d[col], c=d["log10_alpha"], cmap="coolwarm", s=14)
        parts = []
        for name, sel in ((r"$\alpha<1$", d["alpha"] < 1), (r"$\alpha\geq 1$", d["alpha"] >= 1)):
            x, yv = d.loc[sel, "trace_ratio"], d.loc[sel, col]
            ok = np.isfinite(x) & np.isfinite(yv)
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(yv[ok]) > 0:
                rho, p = spearman(x[ok], yv[ok])  # exact p for small n
                parts.append(f"{name}: {rho:.2f} (p={p:.1g}, n={int(ok.sum())})")
        ax.set_title("Spearman " + ", ".join(parts), fontsize=9)
        ax.set_xlabel(r"$\mathrm{Tr}(H)/\|H\|_F$ at init")
        ax.set_ylabel(lab)
        if col in ("loss", "mean_logit_grad_norm"):
            ax.set_yscale("log")
    fig.suptitle(title or "Curvature against the state of the model across random inits")
    fig.set_layout_engine("none")
    fig.subplots_adjust(left=0.05, right=0.91, top=0.85, bottom=0.14, wspace=0.35)
    if sc is not None:
        fig.colorbar(sc, cax=fig.add_axes([0.93, 0.14, 0.01, 0.71]),
                     label=r"$\log_{10}\alpha$ (scale of the He init)")
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def plot_decompose_training(df: pd.DataFrame, path=None, title=None):
    """Trainability inside and outside the zone: final accuracy against alpha for GD
    (lr0 / alpha^(L-2)) and Adam, with the zone shaded; zero logits and loss over time."""
    plt = pyplot_free()
    tr = df[df["part"] == "training"]
    sc = df[df["part"] == "scale"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    if not sc.empty:
        zone = sc.groupby("alpha")["trace_ratio"].mean()
        inside = zone[zone > 1.0]
        if not inside.empty:
            ax.axvspan(inside.index.min(), inside.index.max(), color="gold", alpha=0.3,
                       label=r"zone: mean $\mathrm{Tr}H/\|H\|_F > 1$")
    last = tr.sort_values("step").groupby(["optimizer", "alpha"]).tail(1)
    for opt, g in last.groupby("optimizer"):
        g = g.sort_values("alpha")
        lab = r"GD, lr = lr$_0/\alpha^{L-2}$" if opt == "gd" else "Adam (full batch)"
        ax.plot(g["alpha"], g["val_acc"], marker="o", label=lab)
    ax.set_xscale("log")
    ax.set_xlabel(r"scale $\alpha$ of the He init (dimensionless)")
    ax.set_ylabel("final validation accuracy (fraction)")
    ax.set_title("trainability inside and outside the zone")
    ax.legend(fontsize=8)
    alphas = sorted(tr["alpha"].unique())
    cmap = plt.get_cmap("coolwarm")
    for ax, col, lab in ((axes[1], "zero_logit_frac", "fraction of zero logits"),
                         (axes[2], "train_loss", "training loss (nats)")):
        ref = min(alphas, key=lambda a: abs(math.log(a))) if alphas else None
        for j, a in enumerate(alphas):
            # coolwarm's middle (alpha ~ 1) is a pale grey on white: the reference curve
            # is drawn in black, thicker, on top
            c = "k" if a == ref else cmap(j / max(1, len(alphas) - 1))
            for opt, ls in (("gd", "-"), ("adam", ":")):
                g = tr[(tr["alpha"] == a) & (tr["optimizer"] == opt)].sort_values("step")
                if not g.empty:
                    ax.plot(g["step"], g[col], color=c, ls=ls, lw=2.2 if a == ref else 1.2,
                            zorder=3 if a == ref else 2,
                            label=(rf"$\alpha$ = {a:.3g}" + (" (reference)" if a == ref else ""))
                            if opt == "gd" else None)
        ax.set_xlabel("full-batch step")
        ax.set_ylabel(lab)
        ax.set_title(f"{lab} (solid: GD, dotted: Adam)")
    axes[2].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.suptitle(title or "Training from inside and outside the Goldilocks zone")
    return _save(fig, path)

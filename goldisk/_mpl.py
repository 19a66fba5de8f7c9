"""Figures without pyplot: no global figure registry, no backend switch.

Library plotting code makes plain :class:`matplotlib.figure.Figure` objects (rendered by
Agg when saved), so a long sweep or a test session never accumulates open pyplot figures,
and calling a plot function in a notebook leaves the user's backend alone.
"""

from __future__ import annotations

__all__ = ["pyplot_free"]


class _PyplotFree:
    """The few pyplot names goldisk's plots use, backed by non-global objects."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(nrows, ncols, **kwargs)

    @property
    def rcParams(self):  # noqa: N802 - pyplot's name
        import matplotlib

        return matplotlib.rcParams

    @staticmethod
    def get_cmap(name: str):
        import matplotlib

        return matplotlib.colormaps[name]


def pyplot_free() -> _PyplotFree:
    """An object with ``subplots``, ``rcParams`` and ``get_cmap`` like ``matplotlib.pyplot``."""
    return _PyplotFree()

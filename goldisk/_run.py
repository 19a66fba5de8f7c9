"""The run hooks every long computation takes: seed, progress bar, resuming, streaming.

``random_state``, ``progress``, ``done`` and ``on_result`` are written once here, as one
object built from the caller's keywords, instead of in every experiment's signature.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["RunHooks", "run_hooks"]


@dataclass(frozen=True)
class RunHooks:
    """How a run is seeded, shown, resumed and streamed.

    Parameters
    ----------
    random_state : int, Generator or None, default=0
        Seeds every draw of the run; the same value gives the same rows.
    progress : bool, default=True
        A progress bar over the run's units.
    done : collection, optional
        Units to skip (resuming).
    on_result : callable, optional
        Called with each finished unit's rows, as they come (e.g. appended to a CSV).
    """

    random_state: object = 0
    progress: bool = True
    done: object = None
    on_result: object = None


HOOK_NAMES = tuple(f.name for f in fields(RunHooks))


def run_hooks(owner: str, kwargs: dict, allowed=()) -> RunHooks:
    """The :class:`RunHooks` in ``kwargs`` (a function's ``**settings``); any keyword that
    is neither a hook nor in ``allowed`` is the ``TypeError`` Python itself would raise.

    Examples
    --------
    >>> run_hooks("f", {"progress": False}).progress
    False
    >>> run_hooks("f", {"seed": 1})
    Traceback (most recent call last):
    TypeError: f() got an unexpected keyword argument 'seed'
    """
    for key in kwargs:
        if key not in HOOK_NAMES and key not in allowed:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
    return RunHooks(**{k: v for k, v in kwargs.items() if k in HOOK_NAMES})

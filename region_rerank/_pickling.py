"""Pickling of objects that hold locks: the locks are left out and recreated on load, the
rest (configuration, loaded models, processors) is pickled as it is."""

from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any

__all__ = ["PicklesWithoutLocks"]

_LOCK_TYPES: dict[type, Any] = {
    type(threading.Lock()): threading.Lock,
    type(threading.RLock()): threading.RLock,
}


class PicklesWithoutLocks:
    """Mixin: ``pickle`` / ``copy.deepcopy`` support for a class whose instances hold
    ``threading`` locks or module references (which cannot be pickled). Each lock is
    replaced by a fresh one of the same kind in the copy, each module re-imported."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key, value in state.items():
            factory = _LOCK_TYPES.get(type(value))
            if factory is not None:
                state[key] = _LockMarker(factory is threading.RLock)
            elif isinstance(value, ModuleType):
                state[key] = _ModuleMarker(value.__name__)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if isinstance(value, _LockMarker):
                state[key] = threading.RLock() if value.reentrant else threading.Lock()
            elif isinstance(value, _ModuleMarker):
                state[key] = importlib.import_module(value.name)
        self.__dict__.update(state)


class _ModuleMarker:
    """Stands for a module in a pickled state."""

    def __init__(self, name: str) -> None:
        self.name = name


class _LockMarker:
    """Stands for a lock in a pickled state."""

    def __init__(self, reentrant: bool) -> None:
        self.reentrant = reentrant

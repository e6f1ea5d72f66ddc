"""The data engines by name: how a migration picks the one that moves its data.

A new engine is a module implementing :class:`~kubehop.engine.data.interface.DataEngine` and
one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from kubehop.engine.data.files import FileMover
from kubehop.engine.data.interface import DataEngine, DataError, DataSetup

ENGINES: dict[str, Callable[[DataSetup], DataEngine]] = {
    FileMover.name: FileMover,
}

DEFAULT = FileMover.name
"""The engine every stateful migration uses today. The journal does not record an engine, so a
resumed run picks the same one."""


def data_engine(name: str, setup: DataSetup) -> DataEngine:
    """The engine called ``name``, for the migration ``setup`` describes."""
    try:
        make = ENGINES[name]
    except KeyError:
        raise DataError(f"no data engine {name!r}; engines are {', '.join(ENGINES)}") from None
    return make(setup)

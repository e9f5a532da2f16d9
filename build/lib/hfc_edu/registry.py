"""One registry per kind of thing: attacks, detectors, tasks.

A :class:`Registry` maps a name to an entry (a function, a class or a small record). Adding an
attack, a detector or a dataset is one new file plus one line that registers it::

    from hfc_edu.attacks import ATTACKS
    ATTACKS.register("MyAttack", AttackInfo(...))

Every experiment, the command line and HFC look names up here, so a registered entry is
usable everywhere at once. Unknown names raise a ``ValueError`` that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered ``name -> entry`` map with clear errors.

    Args:
        kind: what the entries are, for error messages (``"attack"``, ``"detector"``, ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name`` and return it. Re-registering a name needs ``replace=True``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string, got {name!r}.")
        if name in self._entries and not replace:
            raise ValueError(
                f"A {self.kind} named {name!r} is already registered; pass replace=True to "
                "override it."
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. a toy entry registered by a test) and return its entry."""
        self.get(name)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        """The entry named ``name``; a ``ValueError`` listing the known names otherwise."""
        if not isinstance(name, str):
            raise TypeError(f"A {self.kind} name must be a string, got {type(name).__name__}.")
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"Unknown {self.kind} {name!r}; known {self.kind}s: {self.names()}."
            ) from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


__all__ = ["Registry"]

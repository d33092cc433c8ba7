"""Deeply immutable copies of cached values, so an in-process cache can hand out one object.

A near-cache hit that unpickles (as cachelib's SimpleCache does) pays a copy
per request so that a caller who mutates what it got cannot change what the
next caller gets. Freezing once, when the value is kept, gives the same
protection for free on every hit: :func:`freeze` copies a value into types that
refuse mutation and still compare, serialize (json, pickle) and type-check as
the originals do: a frozen list is a ``list`` equal to the original.

Measured on a list of 10,000 small dicts (the categories list at 10k, 369 KB of
JSON) on the 2-core development machine: an unpickle per hit took 2.7-4.5 ms;
freezing takes 7-11 ms once per near copy (with the pickling that sizes it),
and each hit after that costs nothing but the LRU lookup. At 3 categories: 1 us
per hit before, 3 us once per copy now. A frozen dataclass of bytes and strings
(the categories' HTTP representation) is kept as it is: nothing to copy at all.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

from cachelib.serializers import SimpleSerializer


class NotFreezable(TypeError):
    """The value holds something mutable that :func:`freeze` does not know how to copy."""


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is a cached value, shared and read-only: copy it")


class FrozenList(list):  # type: ignore[type-arg]
    """A list whose mutators raise; ``list(frozen)`` or ``frozen.copy()`` is a plain list."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[type, tuple[list[Any]]]:
        return list, (list(self),)  # unpickles as a plain (mutable) list

    def __copy__(self) -> list[Any]:
        return list(self)


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict whose mutators raise; ``dict(frozen)`` or ``frozen.copy()`` is a plain dict."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        return dict, (dict(self),)

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)


#: Values that are immutable already (or frozen by freeze), kept as they are.
_IMMUTABLE_TYPES = (
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    range,
    FrozenList,
    FrozenDict,
)
#: The same, exactly: a set lookup is the fast path for the scalars a cached
#: structure is mostly made of (freezing 10,000 small dicts is dominated by it).
_EXACT_IMMUTABLE_TYPES = frozenset(_IMMUTABLE_TYPES)


def freeze(value: Any) -> Any:
    """A deeply immutable copy of ``value`` (the value itself if it is immutable already).

    Lists, dicts, sets, tuples and frozen dataclasses are copied with their
    contents frozen; :class:`NotFreezable` for anything else that may be mutable
    (an arbitrary object), which the caller then copies another way.
    """
    kind = type(value)
    if kind in _EXACT_IMMUTABLE_TYPES:
        return value
    if kind is dict:
        if all(type(item) in _EXACT_IMMUTABLE_TYPES for item in value.values()):
            return FrozenDict(value)  # a flat record: one C-level copy
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if kind is list:
        return FrozenList([freeze(item) for item in value])
    if isinstance(value, _IMMUTABLE_TYPES):
        return value
    if isinstance(value, list):
        return FrozenList([freeze(item) for item in value])
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if kind is tuple:
        return tuple(freeze(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)  # members are hashable, so immutable in practice
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _freeze_dataclass(value)
    raise NotFreezable(kind.__name__)


def _freeze_dataclass(value: Any) -> Any:
    """A frozen dataclass with its fields frozen: the value itself when they already are.

    A frozen dataclass whose fields are immutable (bytes, str, numbers, or
    frozen dataclasses of them, as the HTTP representation a cache holds) is
    immutable: it is kept as it is, with no copy, so what it memoizes (the
    representation's decompressed body) serves every later hit too.
    """
    kind = type(value)
    if not kind.__dataclass_params__.frozen:
        raise NotFreezable(kind.__name__)
    changes = {}
    for field in dataclasses.fields(value):
        current = getattr(value, field.name)
        frozen = freeze(current)
        if frozen is not current:
            if not field.init:  # replace() cannot set it: nothing to copy it into
                raise NotFreezable(f"{kind.__name__}.{field.name}")
            changes[field.name] = frozen
    return dataclasses.replace(value, **changes) if changes else value


def is_immutable(value: Any) -> bool:
    """Whether ``value`` is deeply immutable as it is (:func:`freeze` would keep it)."""
    try:
        return freeze(value) is value
    except NotFreezable:
        return False


#: Stored copies whose unpickled value :class:`ReusingSerializer` keeps.
REUSED_VALUES_KEPT = 8


class ReusingSerializer(SimpleSerializer):
    """cachelib's pickle serializer, unpickling an immutable value once per stored copy.

    cachelib's SimpleCache keeps each value pickled and unpickles it on every
    ``get``, so that no caller can change what the next one gets. A value that is
    immutable already (a frozen dataclass of bytes and strings, as the categories'
    HTTP representation) cannot be changed: the object unpickled from one stored
    copy (the same ``bytes`` object in the cache's dict) is handed out again, as
    the near-cache hands out its frozen copy; with it what the object memoizes
    (the representation's decompressed body). Anything mutable is unpickled per
    ``get`` as before. A ``set`` stores a new ``bytes`` object, so a new value is
    never mistaken for the one before.
    """

    def __init__(self, kept: int = REUSED_VALUES_KEPT) -> None:
        self.kept = kept
        #: id of a stored copy -> (that copy, its value); the copy is held, so its
        #: id cannot be reused by another object while the entry exists.
        self._values: dict[int, tuple[bytes, Any]] = {}

    def loads(self, bvalue: bytes) -> Any:
        found = self._values.get(id(bvalue))
        if found is not None and found[0] is bvalue:
            return found[1]
        value = super().loads(bvalue)
        if is_immutable(value):
            if len(self._values) >= self.kept:  # the oldest goes (dicts keep insertion order)
                self._values.pop(next(iter(self._values), None), None)
            self._values[id(bvalue)] = (bvalue, value)
        return value

"""``ApiFlask``: Flask with two per-request costs an API without sessions or async views
does not need taken off every request, as Flask's docs invite (both are class-level
extension points). Everything else is Flask's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from ecommerce.sessions import NoSessions


class ApiFlask(Flask):
    """The app class ``create_app`` builds.

    - ``session_interface``: :class:`~ecommerce.sessions.NoSessions` (no cookie read,
      no serializer built per request).
    - ``ensure_sync``: Flask asks ``inspect.iscoroutinefunction`` of the view and of
      each hook on every request (five or six checks per hit); whether a function is
      a coroutine function never changes, so the answer is kept per function. The
      functions asked about are the app's registered views, hooks and error
      handlers: a bounded set.
    """

    session_interface = NoSessions()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._runnable: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        runnable = self._runnable.get(func)
        if runnable is None:
            runnable = self._runnable[func] = super().ensure_sync(func)
        return runnable

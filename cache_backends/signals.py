"""What the library reports, as named blinker signals: metrics and logs subscribe, no hooks.

In the manner of Flask's and PynamoDB's ``signals.py``: the library sends, an app
connects receivers once (``signal.connect(receiver)``), and a library user who
wants no metrics connects nothing. A region's signals are sent with the
:class:`~cache_backends.region.Region` as their sender and the region's ``name``
as a keyword, so one receiver can label several keys; a backend's with the part
of the backend that saw it as sender (``sender=`` in ``connect`` picks one
backend). The other keywords are plain values (``str`` enums, numbers, the
exception), so a receiver imports nothing else.

A receiver must be cheap and must not raise: it runs on the thread that made the
call (a request, a background refresh, the reconciler). blinker holds receivers
weakly by default; connect module-level functions, or pass ``weak=False``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: ``event``: a :class:`~cache_backends.loader.LoaderEvent` value (a ``str``: lease won,
#: waited, timed out; a store fenced; a refresh dropped).
loader_event = _signals.signal("loader-event")
#: A cache call failed and the region answered without it (the database did).
cache_error = _signals.signal("cache-error")
#: ``outcome``: an :class:`~cache_backends.owed.OwedOutcome` value of a write's cache update.
owed_outcome = _signals.signal("owed-outcome")
#: ``pending``: how many keys the region's process owes the cache now.
owed_pending = _signals.signal("owed-pending")
#: One reconcile: ``outcome`` (a :class:`~cache_backends.reconciler.ReconcileOutcome` value),
#: ``lag`` (versions the cache was behind, None if unknown), ``repaired`` (it changed the
#: cache) and ``coherent`` (the cache is known to match the database now).
reconciled = _signals.signal("reconciled")

# -- the backends ---------------------------------------------------------------------

#: A near-cache lookup: ``hit`` is True when the near copy answered, False when the
#: remote was asked.
near_lookup = _signals.signal("near-lookup")
#: A near copy of a shared key ended and the instance's copy was asked (``shared.py``):
#: ``taken`` is True when another process's copy answered, False when this process read
#: the remote (for the instance, or alone when nothing was published in time).
shared_copy = _signals.signal("shared-copy")
#: One DynamoDB call: ``operation`` (``GetItem``...), ``seconds``, ``outcome`` (a
#: :class:`~cache_backends.dynamodb.transport.CallOutcome` value: ``ok``, ``throttled``,
#: ``failed``, or ``skipped`` by the open circuit) and ``error`` (None when ``ok``).
dynamodb_call = _signals.signal("dynamodb-call")
#: An item read but not served: ``reason`` (``bad_signature``, ``missing_part``...,
#: the reasons of ``dynamodb/entries.py`` and ``dynamodb/parts.py``).
entry_rejected = _signals.signal("entry-rejected")

"""``GET /categories`` answered in a WSGI layer in front of Flask: the hit at the floor's cost.

A hit's answer is a function of three things: the region's value and status, and
two request headers (``Accept-Encoding``, ``If-None-Match``). Flask's machinery
around it (the request and app contexts, URL matching, six hooks, a ``Response``
object and its header dumps) was most of the app's own CPU per hit under gunicorn
(docs/explanation/hot-path.md has the profile and the numbers).
This layer answers the list with the functions the view itself uses (``views.py``:
the region's read, the negotiated :class:`~ecommerce.categories.representation.Answer`,
the list's headers) and ends the request as the app's hooks end every other one
(``observability.record_request``: the request id and trace headers, the metrics,
the one log line). Every other request, and a read that raised, goes to Flask.

It stands in for the hooks it knows, so it answers only while the app has no
other: on its first request it compares the app's hooks, the list's view function
and Flask's request signals with what it reproduces, and if anything was added (an
extension's hook, a receiver of ``request_started``) it leaves every request to
Flask and says so in one warning. tests/integration/test_hit_path.py holds its
answers to Flask's, header for header, across methods, codings and conditional
requests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, request_finished, request_started
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule

from cache_backends.region import Region
from ecommerce import observability, security
from ecommerce.categories import views
from ecommerce.categories.cache_policy import FAILED_READ_KEY, represent
from ecommerce.categories.representation import negotiate
from ecommerce.request_observation import running_observation

logger = logging.getLogger(__name__)

#: The view this layer answers for, by endpoint.
LIST_ENDPOINT = "categories.list_categories"
_ANSWERED_METHODS = frozenset({"GET", "HEAD"})
#: Status lines as Werkzeug writes them ("304 NOT MODIFIED").
_STATUS_LINES = {code: f"{code} {HTTP_STATUS_CODES[code].upper()}" for code in (200, 304)}
_NO_BODY: tuple[bytes, ...] = ()


class ListHitPath:
    """The WSGI layer; ``app.wsgi_app = ListHitPath(app, region, app.wsgi_app)``.

    Place it inside ProxyFix (the access line's ``remote_addr`` is the client's)
    and inside :class:`~ecommerce.request_observation.ObservedRequests`.
    """

    def __init__(self, app: Flask, region: Region, flask_wsgi_app: WSGIApplication) -> None:
        self.app = app
        self.region = region
        self.flask_wsgi_app = flask_wsgi_app
        #: None until the first request decides (:meth:`_stands_in_for_flask`).
        self.serving: bool | None = None
        self._path = ""
        self._route = ""
        self._cache_name = ""
        self._before: tuple[Callable[[], object], ...] = ()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        serving = self.serving
        if serving is None:
            serving = self.serving = self._stands_in_for_flask()
        if not serving or method not in _ANSWERED_METHODS or environ.get("PATH_INFO") != self._path:
            return self.flask_wsgi_app(environ, start_response)
        observation = running_observation()
        if observation is None:  # called without ObservedRequests around it
            return self.flask_wsgi_app(environ, start_response)
        try:
            for hook in self._before:  # the region's start: idempotent, so Flask may rerun it
                hook()
            representation, status = represent(self.region.get())
        except Exception as error:  # Flask's error handlers answer it, from the view
            environ[FAILED_READ_KEY] = error
            return self.flask_wsgi_app(environ, start_response)
        answer = negotiate(
            representation,
            environ.get("HTTP_ACCEPT_ENCODING"),
            environ.get("HTTP_IF_NONE_MATCH"),
            views.list_headers(status),
        )
        start_response(_STATUS_LINES[answer.status], [*answer.headers, *observation.headers()])
        observability.record_request(
            observation,
            method=method,
            path=self._path,
            route=self._route,
            cache_name=self._cache_name,
            status=answer.status,
            cache_header=status,
            remote_addr=environ.get("REMOTE_ADDR"),
        )
        if method == "HEAD" or not answer.body:
            return _NO_BODY
        return (answer.body,)

    def _stands_in_for_flask(self) -> bool:
        """Whether the app handles the list exactly as this layer reproduces; if so,
        remember the rule's path and labels and the hooks to call."""
        rules = [rule for rule in self.app.url_map.iter_rules() if rule.endpoint == LIST_ENDPOINT]
        differences = self._unreproduced(rules)
        if differences:
            logger.warning(
                "GET %s is answered by Flask, not its hit path: the app has %s it does not "
                "reproduce",
                rules[0].rule if rules else LIST_ENDPOINT,
                " and ".join(differences),
            )
            return False
        (rule,) = rules
        self._path = self._route = rule.rule
        self._cache_name = rule.endpoint.split(".", 1)[0]
        self._before = tuple(
            hook
            for hook in _hooks(self.app.before_request_funcs)
            if hook is not observability.start_request  # ObservedRequests started it
        )
        return True

    def _unreproduced(self, rules: list[Rule]) -> list[str]:
        """What the app does for the list that this layer would not: [] if nothing."""
        app = self.app
        reproduced_before = {observability.start_request, self.region.start}
        reproduced_after = {observability.finish_request, security.add_security_headers}
        checks = {
            "another URL rule": len(rules) != 1 or bool(rules[0].arguments),
            "another view": app.view_functions.get(LIST_ENDPOINT) is not views.list_categories,
            "a before_request hook": any(
                hook not in reproduced_before for hook in _hooks(app.before_request_funcs)
            ),
            "an after_request hook": any(
                hook not in reproduced_after for hook in _hooks(app.after_request_funcs)
            ),
            "a teardown_request hook": any(app.teardown_request_funcs.values()),
            "a URL value preprocessor": any(app.url_value_preprocessors.values()),
            "a receiver of Flask's request signals": any(
                signal.receivers for signal in (request_started, request_finished)
            ),
        }
        return [name for name, differs in checks.items() if differs]


def _hooks(
    registry: Mapping[str | None, Iterable[Callable[..., object]]],
) -> Iterator[Callable[..., object]]:
    """Every hook of one of Flask's registries (the app's, then each blueprint's)."""
    for hooks in registry.values():
        yield from hooks

"""PATCH and DELETE /categories/<id>: the writes, their errors, and what each does to the cache.

The cache stories run on both backends (``make_story_app``: SimpleCache and the
DynamoDB backend on DynamoDB Local) and under each CATEGORIES_CACHE_STRATEGY;
every write must also raise the catalogue version by exactly one, and every
refused write must change nothing: not the database, the cache or the version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from ecommerce.categories import repository
from ecommerce.categories.cache_policy import (
    CACHE_NAME,
    CATEGORIES_CACHE_KEY,
    categories_region,
)
from ecommerce.categories.models import NAME_MAX_LENGTH, Category
from ecommerce.config import MAX_REQUEST_BODY_BYTES
from ecommerce.extensions import cache, db
from ecommerce.metrics import CACHE_LOADER_EVENTS
from tests.support.app import (
    ON_BOTH_DATABASES,
    SEED_CATEGORIES,
    TOYS,
    cached_categories,
    cached_entry,
    categories_in_db,
    get_categories,
    post_category,
    recorded_sql,
)
from tests.support.dynamodb import count_attempts
from tests.support.problems import assert_problem
from tests.support.races import PAUSE_TIMEOUT_SECONDS, PausedLoad
from tests.support.servers import hanging_server

# The repository's claims, on the database production uses too.
pytestmark = ON_BOTH_DATABASES

ELECTRONICS, CLOTHING, BOOKS = SEED_CATEGORIES
#: Clothing (id 2) renamed; the list keeps its id order.
APPAREL = {"id": 2, "name": "Apparel"}
AFTER_RENAME = [ELECTRONICS, APPAREL, BOOKS]
AFTER_DELETE = [ELECTRONICS, BOOKS]
UNKNOWN_ID = 999
#: Contains "=" on purpose, as in tests/integration/test_app_auth.py.
ADMIN_TOKEN = "s3cret-token=="
#: A background refresh lands in milliseconds; the deadline only stops a hang.
POLL_DEADLINE_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.02
JSON = "application/json"
#: init-db creates the version row at 0 and seeds the three categories, one INSERT each:
#: the triggers raise it once per INSERT on either database.
SEEDED_VERSION = 3


# --- helpers --------------------------------------------------------------------------


def patch_category(
    client: FlaskClient, category_id: int, name: str, **kwargs: Any
) -> dict[str, Any]:
    """PATCH a new name; asserts 200 and returns the body."""
    response = client.patch(f"/categories/{category_id}", json={"name": name}, **kwargs)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == JSON
    return response.get_json()


def delete_category(client: FlaskClient, category_id: int, **kwargs: Any) -> None:
    """DELETE a category; asserts 204 with an empty body."""
    response = client.delete(f"/categories/{category_id}", **kwargs)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.data == b""


def rename_clothing(client: FlaskClient) -> None:
    """PATCH Clothing to Apparel."""
    assert patch_category(client, CLOTHING["id"], APPAREL["name"]) == APPAREL


def delete_clothing(client: FlaskClient) -> None:
    """DELETE Clothing."""
    delete_category(client, CLOTHING["id"])


#: Each successful write and the list it leaves, for the per-strategy stories.
WRITES = pytest.mark.parametrize(
    ("write", "expected"),
    [(rename_clothing, AFTER_RENAME), (delete_clothing, AFTER_DELETE)],
    ids=["patch", "delete"],
)


def catalogue_version(app: Flask) -> int:
    """The catalogue version as the database holds it now."""
    with app.app_context():
        return repository.list_categories_at_version()[1]


def wait_for_hit(client: FlaskClient) -> list[dict[str, Any]]:
    """GET the list until it is a HIT (a background refresh has landed); its body."""
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while (answer := get_categories(client))[1] != "HIT":
        assert time.monotonic() < deadline, f"no HIT within the deadline; last: {answer}"
        time.sleep(POLL_INTERVAL_SECONDS)
    return answer[0]


def warm_and_settled(app: Flask) -> Flask:
    """Cache the seed list and wait until no load holds the lease (init-db's refresh is over)."""
    assert wait_for_hit(app.test_client()) == SEED_CATEGORIES
    with app.app_context():
        loader = categories_region().loader
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while loader.cache.get(loader.lease_key) is not None:
        assert time.monotonic() < deadline, "the lease was never released"
        time.sleep(POLL_INTERVAL_SECONDS)
    assert cached_categories(app) == SEED_CATEGORIES
    return app


# --- PATCH and DELETE, the happy paths ------------------------------------------------


def test_patch_renames_and_both_reads_show_the_new_name(
    make_story_app: Callable[..., Flask],
) -> None:
    """PATCH answers 200 with the trimmed renamed category; GET by id and the list show it."""
    app = warm_and_settled(make_story_app())
    client = app.test_client()

    response = client.patch("/categories/2", json={"name": "  Apparel \t"})

    assert response.status_code == 200
    assert response.mimetype == JSON
    assert response.get_json() == APPAREL
    assert client.get("/categories/2").get_json() == APPAREL
    assert get_categories(client)[0] == AFTER_RENAME
    assert categories_in_db(app) == AFTER_RENAME


def test_delete_answers_204_and_the_category_is_gone(
    make_story_app: Callable[..., Flask],
) -> None:
    """DELETE answers 204 with no body; GET by id is then a 404 problem, the list lacks it."""
    app = warm_and_settled(make_story_app())
    client = app.test_client()

    delete_clothing(client)

    problem = assert_problem(client.get("/categories/2"), 404)
    assert "2" in problem["detail"]
    assert get_categories(client)[0] == AFTER_DELETE
    assert categories_in_db(app) == AFTER_DELETE


def test_deleting_twice_is_a_404_problem_the_second_time(
    make_story_app: Callable[..., Flask],
) -> None:
    """The second DELETE of one id finds nothing: 404, and the version is not raised again."""
    app = warm_and_settled(make_story_app())
    client = app.test_client()
    delete_clothing(client)
    version_after_delete = catalogue_version(app)
    cache_after_first = get_categories(client)[0]

    problem = assert_problem(client.delete("/categories/2"), 404)

    assert "2" in problem["detail"]
    assert catalogue_version(app) == version_after_delete
    assert categories_in_db(app) == AFTER_DELETE
    assert cached_categories(app) == cache_after_first == AFTER_DELETE


def test_delete_of_an_unknown_id_is_a_404_problem_and_changes_nothing(
    make_story_app: Callable[..., Flask],
) -> None:
    """DELETE of an id that never existed: 404, database, cache and version untouched."""
    app = warm_and_settled(make_story_app())

    problem = assert_problem(app.test_client().delete(f"/categories/{UNKNOWN_ID}"), 404)

    assert str(UNKNOWN_ID) in problem["detail"]
    assert categories_in_db(app) == SEED_CATEGORIES
    assert cached_categories(app) == SEED_CATEGORIES
    assert catalogue_version(app) == SEEDED_VERSION


@pytest.mark.parametrize("new_name", ["BOOKS", "Books", "  bOoKs  "])
def test_patch_may_change_the_letter_case_of_its_own_name(
    make_story_app: Callable[..., Flask], new_name: str
) -> None:
    """Only *another* category's name is taken: Books may become BOOKS (or stay Books)."""
    app = warm_and_settled(make_story_app())
    renamed = {"id": BOOKS["id"], "name": new_name.strip()}

    assert patch_category(app.test_client(), BOOKS["id"], new_name) == renamed

    assert categories_in_db(app) == [ELECTRONICS, CLOTHING, renamed]
    assert get_categories(app.test_client())[0] == [ELECTRONICS, CLOTHING, renamed]
    assert catalogue_version(app) == SEEDED_VERSION + 1


def test_a_deleted_name_is_free_again_for_a_rename(make_story_app: Callable[..., Flask]) -> None:
    """After Clothing is deleted, Books may be renamed to clothing."""
    app = warm_and_settled(make_story_app())
    client = app.test_client()
    delete_clothing(client)

    assert patch_category(client, BOOKS["id"], "clothing") == {"id": 3, "name": "clothing"}
    assert get_categories(client)[0] == [ELECTRONICS, {"id": 3, "name": "clothing"}]


# --- each cache strategy, for PATCH and DELETE ----------------------------------------


@WRITES
def test_invalidate_the_next_get_misses_with_the_change_then_hits(
    make_story_app: Callable[..., Flask],
    write: Callable[[FlaskClient], None],
    expected: list[dict[str, Any]],
) -> None:
    """invalidate: the write leaves no fresh list; the next GET reloads it (MISS), then HITs."""
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY="invalidate"))
    client = app.test_client()

    write(client)

    assert cached_categories(app) is None
    assert get_categories(client) == (expected, "MISS")
    assert get_categories(client) == (expected, "HIT")


@WRITES
def test_write_through_the_next_get_hits_with_the_change_without_sql(
    make_story_app: Callable[..., Flask],
    write: Callable[[FlaskClient], None],
    expected: list[dict[str, Any]],
) -> None:
    """write-through: the write stores the new list; the next GET is a HIT that sends no SQL."""
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY="write-through"))
    client = app.test_client()

    write(client)

    assert cached_categories(app) == expected
    with recorded_sql(app) as statements:
        assert get_categories(client) == (expected, "HIT")
    assert statements == []


@WRITES
def test_refresh_async_serves_stale_or_the_change_never_a_miss_then_the_change(
    make_story_app: Callable[..., Flask],
    write: Callable[[FlaskClient], None],
    expected: list[dict[str, Any]],
) -> None:
    """refresh-async: right after the write a GET is STALE (old list) or HIT (new), then HIT."""
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY="refresh-async"))
    client = app.test_client()

    write(client)
    right_after = get_categories(client)

    assert right_after in [(SEED_CATEGORIES, "STALE"), (expected, "HIT")]
    assert wait_for_hit(client) == expected
    assert cached_categories(app) == expected
    assert categories_in_db(app) == expected


@pytest.mark.parametrize("strategy", ["invalidate", "write-through", "refresh-async"])
def test_get_by_id_after_a_rename_reads_the_database_under_every_strategy(
    make_story_app: Callable[..., Flask], strategy: str
) -> None:
    """GET /categories/<id> is never served from the list cache: it shows a rename at once."""
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY=strategy))
    client = app.test_client()

    rename_clothing(client)

    assert client.get("/categories/2").get_json() == APPAREL


def test_write_through_caches_the_renamed_list_at_the_new_version(
    make_story_app: Callable[..., Flask],
) -> None:
    """After a write-through PATCH the cached entry holds the new list at the new version."""
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY="write-through"))
    with app.app_context():
        entry_before = cached_entry()
    assert entry_before is not None
    assert entry_before.version == SEEDED_VERSION

    rename_clothing(app.test_client())

    with app.app_context():
        entry = cached_entry()
    assert entry is not None
    assert entry.has_value
    assert entry.value.decoded() == AFTER_RENAME
    assert entry.version == entry.fence == SEEDED_VERSION + 1 == catalogue_version(app)


def lease_waits() -> float:
    """How often a GET has waited for another caller's load (the lease_waited counter)."""
    return CACHE_LOADER_EVENTS.labels(CACHE_NAME, "lease_waited")._value.get()


@WRITES
def test_a_get_after_the_write_is_never_handed_a_load_that_started_before_it(
    make_story_app: Callable[..., Flask],
    paused_load: PausedLoad,
    write: Callable[[FlaskClient], None],
    expected: list[dict[str, Any]],
) -> None:
    """invalidate: a GET begun after the write returned sees it, even if an older load is in flight.

    An early GET misses and loads the pre-write list, paused right after its snapshot;
    the write commits and leaves its tombstone; a late GET then arrives in the same
    process. The early load's store is fenced off, so the late GET must load again
    (the lease makes it wait for the early one first), not take the early list.
    """
    app = warm_and_settled(make_story_app(CATEGORIES_CACHE_STRATEGY="invalidate"))
    with app.app_context():
        categories_region().loader.cache.delete(CATEGORIES_CACHE_KEY)  # cold: the next GET loads
    pause = paused_load
    pause.arm()

    with ThreadPoolExecutor(max_workers=2) as pool:
        early = pool.submit(get_categories, app.test_client())
        pause.wait_until_paused()  # its snapshot is the list before the write
        write(app.test_client())
        waits_before = lease_waits()
        late = pool.submit(get_categories, app.test_client())
        deadline = time.monotonic() + POLL_DEADLINE_SECONDS
        while lease_waits() == waits_before and not late.done():
            assert time.monotonic() < deadline, "the late GET neither waited nor answered"
            time.sleep(POLL_INTERVAL_SECONDS)
        pause.resume.set()

        assert early.result(PAUSE_TIMEOUT_SECONDS) == (SEED_CATEGORIES, "MISS")
        assert late.result(PAUSE_TIMEOUT_SECONDS)[0] == expected
    assert get_categories(app.test_client()) == (expected, "HIT")


# --- refused PATCHes change nothing ---------------------------------------------------


@pytest.mark.parametrize(
    ("category_id", "body", "content_type", "status", "detail_mentions"),
    [
        (UNKNOWN_ID, b'{"name": "Toys"}', JSON, 404, str(UNKNOWN_ID)),
        (2, b'{"name": "Books"}', JSON, 409, "already exists"),
        (2, b'{"name": "  bOOks "}', JSON, 409, "already exists"),
        (2, b'{"name": "ELECTRONICS"}', JSON, 409, "already exists"),
        (2, b'{"name": ""}', JSON, 400, "blank"),
        (2, b'{"name": "   \\t "}', JSON, 400, "blank"),
        (2, b'{"name": 42}', JSON, 400, "string"),
        (2, b'{"name": null}', JSON, 400, "string"),
        (2, b'{"name": ["Toys"]}', JSON, 400, "string"),
        (2, b'{"name": true}', JSON, 400, "string"),
        (2, b'{"name": "' + b"x" * (NAME_MAX_LENGTH + 1) + b'"}', JSON, 400, "100"),
        (2, b"{}", JSON, 400, "required"),
        (2, b'{"title": "Toys"}', JSON, 400, "required"),
        (2, b'["Toys"]', JSON, 400, "JSON object"),
        (2, b'{"name": "Toys"', JSON, 400, "not valid JSON"),
        (2, b"", JSON, 400, "not valid JSON"),
        (2, b'{"name": "Toys"}', "text/plain", 415, "application/json"),
        (2, b"name=Toys", "application/x-www-form-urlencoded", 415, "application/json"),
        (2, b'{"name": "Toys"}', None, 415, "application/json"),
        (2, b'{"name": "' + b"x" * MAX_REQUEST_BODY_BYTES + b'"}', JSON, 413, "larger than"),
    ],
    ids=[
        "unknown-id",
        "other-name",
        "other-name-other-case-padded",
        "other-name-upper",
        "empty",
        "blank",
        "number",
        "null",
        "list",
        "bool",
        "too-long",
        "missing",
        "other-key",
        "not-an-object",
        "truncated-json",
        "empty-body",
        "text-plain",
        "form",
        "no-content-type",
        "too-large",
    ],
)
def test_a_refused_patch_is_a_problem_and_changes_nothing(
    make_app: Callable[..., Flask],
    category_id: int,
    body: bytes,
    content_type: str | None,
    status: int,
    detail_mentions: str,
) -> None:
    """Each bad PATCH answers its problem+json; database, cached list and version are untouched.

    SimpleCache under invalidate, where a stray after-write call would drop the list; the
    refusals on both backends are in the version test at the end of this file.
    """
    app = warm_and_settled(make_app(CATEGORIES_CACHE_STRATEGY="invalidate"))

    response = app.test_client().patch(
        f"/categories/{category_id}", data=body, content_type=content_type
    )

    assert detail_mentions in assert_problem(response, status)["detail"]
    assert categories_in_db(app) == SEED_CATEGORIES
    assert cached_categories(app) == SEED_CATEGORIES
    assert catalogue_version(app) == SEEDED_VERSION


def test_a_name_of_the_maximum_length_is_accepted_by_patch(app: Flask) -> None:
    """The 400 for length starts one character past NAME_MAX_LENGTH, as for POST."""
    longest_name = "x" * NAME_MAX_LENGTH

    assert patch_category(app.test_client(), 2, longest_name) == {"id": 2, "name": longest_name}


# --- ADMIN_TOKEN ----------------------------------------------------------------------


@pytest.fixture
def protected_app(make_app: Callable[..., Flask]) -> Flask:
    """A seeded SimpleCache app with ADMIN_TOKEN set and the seed list cached (invalidate)."""
    return warm_and_settled(
        make_app(ADMIN_TOKEN=ADMIN_TOKEN, CATEGORIES_CACHE_STRATEGY="invalidate")
    )


@pytest.fixture
def protected_story_app(make_story_app: Callable[..., Flask]) -> Flask:
    """As ``protected_app``, on each backend."""
    return warm_and_settled(
        make_story_app(ADMIN_TOKEN=ADMIN_TOKEN, CATEGORIES_CACHE_STRATEGY="invalidate")
    )


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", f"Basic {ADMIN_TOKEN}"],
    ids=["missing", "empty", "no-token", "wrong", "longer", "basic"],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/categories/2", {"name": "Apparel"}),
        ("delete", "/categories/2", None),
        ("patch", f"/categories/{UNKNOWN_ID}", {"name": "Apparel"}),
        ("delete", f"/categories/{UNKNOWN_ID}", None),
    ],
    ids=["patch", "delete", "patch-unknown", "delete-unknown"],
)
def test_a_write_without_the_right_bearer_token_is_401_and_changes_nothing(
    protected_app: Flask,
    method: str,
    path: str,
    body: dict[str, str] | None,
    authorization: str | None,
) -> None:
    """PATCH and DELETE need the token: 401 (before any 404), nothing changed anywhere."""
    headers = {} if authorization is None else {"Authorization": authorization}

    response = getattr(protected_app.test_client(), method)(path, json=body, headers=headers)

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    assert categories_in_db(protected_app) == SEED_CATEGORIES
    assert cached_categories(protected_app) == SEED_CATEGORIES
    assert catalogue_version(protected_app) == SEEDED_VERSION


def test_unauthorized_writes_change_nothing_on_either_backend_then_the_token_works(
    protected_story_app: Flask,
) -> None:
    """Token-less and wrong-token PATCH/DELETE are 401s that leave all alone; the token works."""
    app = protected_story_app
    client = app.test_client()
    for headers in [{}, {"Authorization": "Bearer wrong-token"}]:
        assert_problem(
            client.patch("/categories/2", json={"name": "Apparel"}, headers=headers), 401
        )
        assert_problem(client.delete("/categories/2", headers=headers), 401)
    assert categories_in_db(app) == SEED_CATEGORIES
    assert cached_categories(app) == SEED_CATEGORIES
    assert catalogue_version(app) == SEEDED_VERSION

    authorized = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert patch_category(client, 2, "Apparel", headers=authorized) == APPAREL
    delete_category(client, 1, headers=authorized)
    assert get_categories(client)[0] == [APPAREL, BOOKS]
    assert catalogue_version(app) == SEEDED_VERSION + 2


def test_the_token_scheme_is_case_insensitive_for_patch_and_delete(protected_app: Flask) -> None:
    """``bearer`` works as well as ``Bearer``, as for POST."""
    client = protected_app.test_client()
    headers = {"Authorization": f"bearer {ADMIN_TOKEN}"}

    assert patch_category(client, 2, "Apparel", headers=headers) == APPAREL
    delete_category(client, 2, headers=headers)


# --- the catalogue version ------------------------------------------------------------


def test_each_successful_write_raises_the_version_by_one_and_refused_ones_do_not(
    make_story_app: Callable[..., Flask],
) -> None:
    """POST, PATCH and DELETE each add one to the catalogue version; 4xx answers add nothing."""
    app = warm_and_settled(make_story_app())
    client = app.test_client()
    version = catalogue_version(app)
    assert version == SEEDED_VERSION

    def assert_version(expected: int) -> None:
        assert catalogue_version(app) == expected

    assert post_category(client, "Toys") == TOYS
    assert_version(version + 1)
    assert patch_category(client, TOYS["id"], "Games") == {"id": TOYS["id"], "name": "Games"}
    assert_version(version + 2)
    delete_category(client, TOYS["id"])
    assert_version(version + 3)
    assert get_categories(client)[0] == SEED_CATEGORIES  # cache it again (invalidate)
    cache_before = cached_categories(app)
    assert cache_before == SEED_CATEGORIES

    refused = [
        (client.post("/categories", json={"name": "books"}), 409),
        (client.post("/categories", json={"name": " "}), 400),
        (client.patch("/categories/1", json={"name": "Clothing"}), 409),
        (client.patch(f"/categories/{TOYS['id']}", json={"name": "Toys"}), 404),
        (client.patch("/categories/1", json={"name": 1}), 400),
        (client.patch("/categories/1", data="Toys", content_type="text/plain"), 415),
        (client.delete(f"/categories/{TOYS['id']}"), 404),
    ]
    for response, status in refused:
        assert_problem(response, status)
    assert_version(version + 3)
    assert categories_in_db(app) == SEED_CATEGORIES
    assert cached_categories(app) == cache_before

    # A rename to the same name is still a write: one more, and no more.
    assert patch_category(client, 1, "Electronics") == ELECTRONICS
    assert_version(version + 4)
    assert categories_in_db(app) == SEED_CATEGORIES


def test_a_patch_whose_row_a_concurrent_delete_removed_is_a_404_not_a_500(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DELETE commits between the PATCH's read of the row and its UPDATE.

    The interleaving is forced: the PATCH's lookup returns the row, then another
    connection deletes it, so the UPDATE matches nothing (SQLAlchemy's
    StaleDataError). The answer is the 404 the PATCH would have got a moment
    later, and neither the version nor the list changes beyond the DELETE.
    """
    client = app.test_client()
    find_row = repository.get_category

    def find_then_lose_the_row(category_id: int) -> Any:
        category = find_row(category_id)
        with app.app_context(), db.engine.begin() as other_connection:
            other_connection.execute(delete(Category).where(Category.id == category_id))
        return category

    monkeypatch.setattr(repository, "get_category", find_then_lose_the_row)
    version_before = catalogue_version(app)

    problem = assert_problem(client.patch("/categories/2", json={"name": "Apparel"}), 404)

    assert "2" in problem["detail"]
    assert catalogue_version(app) == version_before + 1  # the DELETE's own, by its trigger
    assert categories_in_db(app) == AFTER_DELETE


# --- a write whose cache update does not land: the budget, and the update owed --------

#: The request path's write budget (CACHE_DYNAMODB_WRITE_TIMEOUT's default) against the
#: patient writes' (1 s read timeout, one retry): a POST must answer well inside a second.
WRITE_BUDGET_SECONDS = 0.3
POST_DEADLINE_SECONDS = 1.0


@pytest.fixture
def hanging_endpoint() -> Iterator[str]:
    """A server that accepts connections and never answers: DynamoDB behind a partition."""
    with hanging_server() as port:
        yield f"http://127.0.0.1:{port}"


def test_a_post_during_a_partition_answers_within_the_write_budget_and_owes_the_update(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any], hanging_endpoint: str
) -> None:
    """The tombstone's PutItem is tried once, for WRITE_BUDGET_SECONDS, not the patient
    (1 + 1 retry) x 1 s; what did not land is owed, at the write's version."""
    app = make_app(
        **{
            **dynamodb_cache_config,
            "CACHE_DYNAMODB_ENDPOINT_URL": hanging_endpoint,
            "CACHE_DYNAMODB_CREATE_TABLE": False,
            "CACHE_DYNAMODB_WRITE_TIMEOUT": WRITE_BUDGET_SECONDS,
            "CACHE_DYNAMODB_BREAKER_FAILURES": 0,  # every call tries: the budget is measured
            "CATEGORIES_CACHE_STRATEGY": "invalidate",
        }
    )
    attempts = count_attempts(app.extensions["cache"][cache], "PutItem")
    started = time.monotonic()

    assert post_category(app.test_client(), "Toys") == TOYS

    elapsed = time.monotonic() - started
    print(f"\nPOST during a partition (invalidate): {elapsed * 1000:.0f} ms")
    assert elapsed < POST_DEADLINE_SECONDS
    assert attempts[:1] == ["PutItem"]  # later ones are the background retry's
    assert categories_region(app).owed.pending() == {CATEGORIES_CACHE_KEY: catalogue_version(app)}


def test_a_write_while_the_circuit_is_open_shows_once_it_closes_and_never_goes_back(
    make_app: Callable[..., Flask], dynamodb_cache_config: dict[str, Any]
) -> None:
    """The issue's "appeared, then vanished": the POST's tombstone is skipped (circuit
    open) and owed; the database answers meanwhile; when the probe succeeds the owed
    update is retried at once, and no GET after that serves the list without Toys.
    """
    hour = 3600  # the circuit stays open until the test shortens its cool-down
    app = warm_and_settled(
        make_app(
            **dynamodb_cache_config,
            CACHE_DYNAMODB_BREAKER_FAILURES=1,
            CACHE_DYNAMODB_BREAKER_COOLDOWN=hour,
            CATEGORIES_CACHE_STRATEGY="invalidate",
        )
    )
    breaker = app.extensions["cache"][cache].strict.transport.breaker
    breaker.record_failure(time.monotonic())  # a failed call opens it
    client = app.test_client()

    assert post_category(client, "Toys") == TOYS
    owed_version = catalogue_version(app)
    assert categories_region(app).owed.pending() == {CATEGORIES_CACHE_KEY: owed_version}
    assert get_categories(client) == ([*SEED_CATEGORIES, TOYS], "MISS")  # the database
    breaker.cooldown = 0.0  # healed: the next call is the probe

    assert get_categories(client)[0] == [*SEED_CATEGORIES, TOYS]  # the probe's GET, too
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while categories_region(app).owed.pending():
        assert time.monotonic() < deadline, "the owed update was never retried"
        time.sleep(POLL_INTERVAL_SECONDS)
    assert wait_for_hit(client) == [*SEED_CATEGORIES, TOYS]
    with app.app_context():
        entry = cached_entry()
    assert entry is not None and entry.fence >= owed_version

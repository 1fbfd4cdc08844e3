"""Queue ergonomics (issue #24 item 1) over the API and the UI's forms: due dates and the
overdue filter and counts, ``assignee=me``, saved filters, folded name search, next and
previous on the detail page, and the login redirect keeping a whole queue URL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from sqlalchemy import func, insert, select, update

from hub.config import QueueConfig, SectorDueDays
from hub.db.models import Mismatch, SectorRecord
from hub.testing import Servers
from reconciliation.names import fold
from tests.integration.api.conftest import Api, Template, _api, hub_config
from tests.integration.api.paging import walk
from tests.integration.api.test_ui_forms import csrf_of, log_in

pytestmark = pytest.mark.heavy(55)

NOW = datetime.now(UTC)


def _ages(api: Api, **days: float) -> None:
    """Every seeded mismatch first seen just now, then the named ones ``days`` ago."""
    with api.engine.begin() as conn:
        conn.execute(update(Mismatch).values(first_seen_at=NOW))
        for key, d in days.items():
            conn.execute(
                update(Mismatch)
                .where(Mismatch.id == api.ids[key])
                .values(first_seen_at=NOW - timedelta(days=d))
            )


def _ids(resp) -> set[int]:
    assert resp.status_code == 200, resp.text
    return {i["id"] for i in resp.json()["items"]}


# ------------------------------------------------------------------------- due and overdue


def test_items_carry_age_due_date_and_overdue_by_severity(api):
    # deceased: critical (3 days), in review; dob: medium (14 days); name: low (30 days)
    _ages(api, deceased=4, dob=10, name=31)
    items = {
        i["id"]: i
        for i in api.get("/api/v1/mismatches?status=open&status=in_review").json()["items"]
    }
    d, b, n = (items[api.ids[k]] for k in ("deceased", "dob", "name"))
    assert (d["age_days"], d["overdue"]) == (4, True)
    assert (b["age_days"], b["overdue"]) == (10, False)
    assert (n["age_days"], n["overdue"]) == (31, True)
    due = datetime.fromisoformat(b["due_at"])
    assert abs(due - (NOW - timedelta(days=10) + timedelta(days=14))) < timedelta(seconds=1)
    detail = api.get(f"/api/v1/mismatches/{api.ids['deceased']}").json()["mismatch"]
    assert detail["overdue"] is True and detail["age_days"] == 4


@pytest.mark.parametrize("expected_recent", [0, 10**9], ids=["backlog", "fresh store"])
def test_overdue_counts_agree_with_a_direct_count_either_way_round(
    api, monkeypatch, expected_recent
):
    """The open ones of the figures less those not yet due (a store with a backlog), or the
    overdue ones counted (most of the store recent): the same counts as the filter's."""
    from hub.api.queue import due, pages

    _ages(api, deceased=4, dob=10, name=31, arabic=8, fixed=400)
    monkeypatch.setattr(pages, "estimate", lambda conn, stmt: expected_recent)
    table = api.config.queue.due_table()
    with api.engine.connect() as conn:
        counted = {
            s: n
            for s, n in conn.execute(
                select(Mismatch.sector, func.count())
                .where(due.overdue_condition(table))
                .group_by(Mismatch.sector)
            )
        }
        assert due.overdue_by_sector(conn, table) == counted == {"tax": 2, "banking": 1}


def test_overdue_filter_and_counts_in_stats(api):
    _ages(api, deceased=4, dob=10, name=31, arabic=8, fixed=400)
    over = _ids(api.get("/api/v1/mismatches?overdue=true"))
    # arabic: high (7 days) in banking; fixed is closed, so never overdue
    assert over == {api.ids[k] for k in ("deceased", "name", "arabic")}
    assert api.ids["dob"] in _ids(api.get("/api/v1/mismatches?overdue=false"))
    assert _ids(api.get("/api/v1/mismatches?overdue=true&sector=tax")) == {
        api.ids["deceased"],
        api.ids["name"],
    }
    stats = {s["sector"]: s for s in api.get("/api/v1/stats").json()["sectors"]}
    assert stats["tax"]["overdue"] == 2 and stats["banking"]["overdue"] == 1
    assert stats["labour"]["overdue"] == 0
    assert api.get("/api/v1/mismatches?overdue=maybe").status_code == 422


@pytest.fixture
def api_due(servers: Servers, api_template: Template) -> Iterator[Api]:
    """The API with tax's critical mismatches due in 10 days rather than 3."""

    def config(url: str, bootstrap: str):
        base = hub_config(url, bootstrap)
        queue = QueueConfig(sector_due_days={"tax": SectorDueDays(critical=10)})
        return base.model_copy(update={"queue": queue})

    yield from _api(servers, api_template, config)


def test_due_days_are_overridden_per_sector(api_due):
    api = api_due
    _ages(api, deceased=4, arabic=8)
    assert _ids(api.get("/api/v1/mismatches?overdue=true")) == {api.ids["arabic"]}
    item = api.get(f"/api/v1/mismatches/{api.ids['deceased']}").json()["mismatch"]
    assert item["overdue"] is False
    assert QueueConfig().days("tax", "critical") == 3
    assert api.config.queue.days("tax", "critical") == 10
    assert api.config.queue.days("banking", "critical") == 3


def test_the_queue_page_shows_age_due_date_and_the_overdue_count(api):
    _ages(api, deceased=4, name=31)
    log_in(api.client, "steward")
    html = api.client.get("/queue?sector=tax").text
    assert 'id="overdue-count" data-count="/queue/overdue-count?sector=tax"' in html
    # The count comes after the page (as the per-rule counts do): a page never waits for it.
    count = api.client.get("/queue/overdue-count", params={"sector": "tax"})
    assert count.status_code == 200 and count.json() == {"n": 2, "exact": True}
    bad = api.client.get("/queue/overdue-count", params={"overdue": "maybe"})
    assert bad.status_code == 422 and "overdue" in bad.json()["detail"]
    assert "overdue=true" in html and "4 d" in html and "31 d" in html
    html = api.client.get("/queue?sector=tax&overdue=true").text
    assert html.count('<tr class="sev-') == 2
    assert api.client.get("/queue?overdue=maybe").status_code == 422


# ------------------------------------------------------------------------------ my queue


def test_assignee_me_is_the_caller(api):
    assert _ids(api.get("/api/v1/mismatches?assignee=me", role="steward")) == {api.ids["deceased"]}
    assert _ids(api.get("/api/v1/mismatches?assignee=me", role="viewer")) == set()
    log_in(api.client, "steward")
    html = api.client.get("/queue").text
    assert 'href="/queue?assignee=me"' in html and "My queue" in html
    html = api.client.get("/queue?assignee=me").text
    assert html.count('<tr class="sev-') == 1 and f">{api.ids['deceased']}</a>" in html


# ------------------------------------------------------------------------- saved filters


def test_saved_filters_are_created_listed_and_deleted_by_their_owner(api):
    body = {
        "name": "Tax critical",
        "filter": {"sector": "tax", "severity": "critical", "overdue": True, "q": None},
    }
    resp = api.post("/api/v1/saved-filters", role="steward", json=body)
    assert resp.status_code == 201, resp.text
    sf = resp.json()
    assert sf["query"] == "sector=tax&severity=critical&overdue=true"  # the queue page's
    assert api.post("/api/v1/saved-filters", role="steward", json=body).status_code == 409
    # the same name is another user's own
    assert api.post("/api/v1/saved-filters", role="viewer", json=body).status_code == 201
    mine = api.get("/api/v1/saved-filters", role="steward").json()
    assert [(s["name"], s["query"]) for s in mine] == [("Tax critical", sf["query"])]
    # only the owner deletes it
    other = api.client.delete(f"/api/v1/saved-filters/{sf['id']}", headers=api.headers("admin"))
    assert other.status_code == 404
    own = api.client.delete(f"/api/v1/saved-filters/{sf['id']}", headers=api.headers("steward"))
    assert own.status_code == 204
    assert api.get("/api/v1/saved-filters", role="steward").json() == []
    assert len(api.get("/api/v1/saved-filters", role="viewer").json()) == 1
    # what it holds opens as a queue page
    log_in(api.client, "viewer")
    assert api.client.get("/queue?" + sf["query"]).status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"sectr": "tax"},  # unknown field
        {"severity": "urgent"},
        {"rule": "NO_SUCH_RULE"},
        {"sector": "nowhere"},
        {"sector": ["tax", "banking"]},  # the queue page takes one
        {"min_age_days": "abc"},
        {"overdue": "maybe"},
        {"sort": "citizen_id"},
        {"name": "x" * 65},
    ],
)
def test_a_bad_saved_filter_is_refused_with_a_reason(api, bad):
    body = {"name": "x", "filter": bad}
    resp = api.post("/api/v1/saved-filters", role="steward", json=body)
    assert resp.status_code == 422 and resp.json()["detail"]
    assert api.get("/api/v1/saved-filters", role="steward").json() == []


@pytest.mark.parametrize(
    "query",
    [
        "sectr=tax",
        "severity=urgent",
        "sector=nowhere",
        "overdue=maybe",
        "sort=citizen_id",
        "limit=100000",
        "sector=tax&sector=banking",
        "min_age_days=abc",
    ],
)
def test_a_bad_query_saved_from_the_queue_page_is_flashed_not_saved(api, query):
    log_in(api.client, "steward")
    token = csrf_of(api.client.get("/queue").text)
    resp = api.client.post(
        "/queue/saved-filters", data={"csrf_token": token, "name": "bad", "query": query}
    )
    assert resp.status_code == 303
    assert 'class="flash error"' in api.client.get(resp.headers["location"]).text
    assert api.get("/api/v1/saved-filters", role="steward").json() == []


def test_saving_a_filter_from_the_queue_page_lists_it_as_a_link(api):
    log_in(api.client, "steward")
    html = api.client.get("/queue?sector=tax&rule=NAME_MISMATCH").text
    resp = api.client.post(
        "/queue/saved-filters",
        data={
            "csrf_token": csrf_of(html),
            "name": "Tax names",
            "query": "sector=tax&rule=NAME_MISMATCH",
        },
    )
    assert resp.status_code == 303
    html = api.client.get(resp.headers["location"]).text
    assert 'href="/queue?sector=tax&amp;rule=NAME_MISMATCH" class="chip">Tax names</a>' in html
    (sf,) = api.get("/api/v1/saved-filters", role="steward").json()
    resp = api.client.post(
        f"/queue/saved-filters/{sf['id']}/delete", data={"csrf_token": csrf_of(html)}
    )
    assert resp.status_code == 303
    assert api.get("/api/v1/saved-filters", role="steward").json() == []


# --------------------------------------------------------------------------- name search

NAMED = [
    # record key, name as the sector spells it
    ("LAB-VN1", "Nguyễn Thị Hương"),
    ("LAB-VN2", "NGUYEN VAN BINH"),
    ("LAB-AR1", "أحمد فاطمة"),
    ("LAB-AR2", "مصطفى حسن"),
]


def _named(api: Api) -> dict[str, int]:
    """Labour records with these names (folded as the reconciler folds them), each with a
    NAME_MISMATCH; their ids by record key."""
    out = {}
    with api.engine.begin() as conn:
        for key, name in NAMED:
            conn.execute(
                insert(SectorRecord).values(
                    sector="labour", record_key=key, full_name=name, name_folded=fold(name)
                )
            )
            out[key] = conn.scalar(
                insert(Mismatch)
                .values(
                    sector="labour",
                    record_key=key,
                    rule="NAME_MISMATCH",
                    field="full_name",
                    severity="low",
                    sector_value=name,
                )
                .returning(Mismatch.id)
            )
    return out


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("nguyen", {"LAB-VN1", "LAB-VN2"}),  # diacritics and case
        ("Nguyễn", {"LAB-VN1", "LAB-VN2"}),
        ("NGUYỄN hương", {"LAB-VN1"}),  # every word, in any order
        ("huong nguy", {"LAB-VN1"}),  # a word's prefix
        ("nguyen an", set()),  # "an" starts no word of theirs
        ("احمد", {"LAB-AR1"}),  # hamza on the alef
        ("فاطمه", {"LAB-AR1"}),  # teh marbuta / heh
        ("مصطفي", {"LAB-AR2"}),  # alef maksura / yeh
        ("ـحَسَن", {"LAB-AR2"}),  # tatweel and tashkeel
        ("!!!", set()),  # nothing left once folded
    ],
)
def test_name_search_folds_case_diacritics_and_arabic_letter_variants(api, name, keys):
    ids = _named(api)
    found = _ids(api.get("/api/v1/mismatches", params={"name": name, "sector": "labour"}))
    assert found == {ids[k] for k in keys}


@pytest.mark.parametrize("name", ["nguyen", "nguyen huong", "ahmad", "!!!"])
@pytest.mark.parametrize("sort", ["id", "first_seen_at", "record_key"])
@pytest.mark.parametrize("cap", [10_000, 0])
def test_a_name_search_pages_the_same_rows_probed_or_joined(api, name, sort, cap, monkeypatch):
    # cap 0: every name search is "broad": estimated, not counted, and each mismatch of
    # the sort index's walk probed for its record's name (a correlated EXISTS).
    from hub.api.queue import pages
    from hub.api.queue.filters import M, MismatchFilter

    _named(api)
    monkeypatch.setattr(pages, "COUNT_CAP", cap)
    f = MismatchFilter.of(name=name)
    with api.engine.connect() as conn:
        key = pages.SORTS[sort]
        expected = list(
            conn.execute(
                select(M.id).where(*f.conditions()).order_by(key.desc(), M.id.desc())
            ).scalars()
        )
        broad = list(
            conn.execute(
                select(M.id)
                .where(*replace(f, name_broad=True).conditions())
                .order_by(key.desc(), M.id.desc())
            ).scalars()
        )
        assert broad == expected
        seen, page = walk(conn, f, sort=sort, limit=1)
    assert seen == expected
    assert bool(expected) is (name in ("nguyen", "nguyen huong"))
    if expected:
        assert page.total_exact is (cap > 0)


@pytest.mark.parametrize(
    ("name", "asked"),
    [
        ("NGUYỄN hương", ("huong",)),
        ("huong nguy", ("huong",)),
        ("nguyen binh van", ("binh", "van")),
        ("nguyen an", ("an",)),
        ("احمد فاطمه", ("فاطمه",)),
    ],
)
def test_a_name_asked_of_the_index_by_its_uncommon_words_finds_the_same_records(api, name, asked):
    # The page asks the name index for the uncommon words only, then checks the whole name.
    from hub.api.queue.filters import M, MismatchFilter

    _named(api)
    f = MismatchFilter.of(name=name)
    with api.engine.connect() as conn:
        every = set(conn.execute(select(M.id).where(*f.conditions())).scalars())
        some = replace(f, name_index_words=asked).conditions()
        assert set(conn.execute(select(M.id).where(*some)).scalars()) == every
    assert len(every) == 1  # a record of NAMED, or the seeded store's "Nguyen Van An"


def test_the_index_is_asked_for_the_words_few_records_have(api):
    # 300 records named "Nguyen Van <n>": "nguyen" and "van" are in every one of them.
    from hub.api.queue import names

    with api.engine.begin() as conn:
        conn.execute(
            insert(SectorRecord),
            [
                {"sector": "tax", "record_key": f"NV{i}", "name_folded": f"nguyen van {i}"}
                for i in range(300)
            ],
        )
        conn.exec_driver_sql("ANALYZE sector_records")
    with api.engine.connect() as conn:
        assert names.index_words(conn, "Nguyễn Văn 123") == ("123",)
        assert names.index_words(conn, "nguyen van") is None  # all common: all asked
        assert names.index_words(conn, "123") is None  # one word
        resp = api.get("/api/v1/mismatches", params={"name": "Nguyễn Văn 123"})
        assert resp.status_code == 200 and resp.json()["items"] == []


def test_rule_and_overdue_counts_of_a_broad_name_equal_those_of_a_narrow_one(api, monkeypatch):
    # Every name "broad" (probed per mismatch), the store small: still counted, exactly.
    from hub.api.queue import names

    _named(api)
    log_in(api.client, "viewer")
    params = {"name": "nguyen"}
    narrow = api.client.get("/queue/rule-counts", params=params).json()
    overdue = api.client.get("/queue/overdue-count", params=params).json()
    monkeypatch.setattr(names, "matching_records", lambda conn, name: (10**9, 1.0))
    assert api.client.get("/queue/rule-counts", params=params).json() == narrow
    assert api.client.get("/queue/overdue-count", params=params).json() == overdue
    assert sum(c["n"] for c in narrow.values()) >= 2


def test_name_search_in_the_queue_page(api):
    ids = _named(api)
    log_in(api.client, "steward")
    html = api.client.get("/queue", params={"name": "nguyen huong"}).text
    assert html.count('<tr class="sev-') == 1 and f">{ids['LAB-VN1']}</a>" in html


def test_the_queue_pages_rule_counts_follow_a_name_or_overdue_filter(api):
    # The usual views are counted from the trigger-kept figures; a name or an overdue filter
    # is not in them, so its counts are the matching mismatches themselves.
    ids = _named(api)
    log_in(api.client, "viewer")
    for params in ({"name": "nguyen huong"}, {"name": "nguyen", "sector": "labour"}):
        counts = api.client.get("/queue/rule-counts", params=params).json()
        listed = api.get("/api/v1/mismatches", params={**params, "limit": 500}).json()["items"]
        by_rule = {r: sum(1 for m in listed if m["rule"] == r) for r in counts}
        assert {r: c["n"] for r, c in counts.items()} == by_rule, params
    assert ids  # the named records exist
    overdue = api.client.get("/queue/rule-counts", params={"overdue": "true"}).json()
    listed = api.get("/api/v1/mismatches", params={"overdue": "true", "limit": 500}).json()
    assert sum(c["n"] for c in overdue.values()) == len(listed["items"])


# -------------------------------------------------------------------- login keeps the URL


def test_the_login_redirect_keeps_every_parameter_of_a_queue_url(api):
    target = "/queue?sector=tax&rule=NAME_MISMATCH&overdue=true"
    resp = api.client.get(target)
    assert resp.status_code == 303
    location = resp.headers["location"]
    assert location == "/login?next=" + quote(target, safe="/")
    assert parse_qs(urlsplit(location).query)["next"] == [target]
    form = api.client.get(location).text
    assert 'name="next" value="/queue?sector=tax&amp;rule=NAME_MISMATCH&amp;overdue=true"' in form
    resp = log_in(api.client, "steward", next_url=target)
    assert resp.headers["location"] == target


# ------------------------------------------------------------------ previous / next, detail


def test_the_detail_page_links_previous_and_next_of_its_queue_list(api):
    order = [
        i["id"]
        for i in api.get("/api/v1/mismatches?sector=tax&status=open&status=in_review").json()[
            "items"
        ]
    ]
    assert len(order) >= 3
    first, second, third = order[:3]
    log_in(api.client, "steward")
    back = "/queue?sector=tax"
    html = api.client.get(f"/mismatches/{second}", params={"back": back}).text
    assert f'href="/mismatches/{first}?back=%2Fqueue%3Fsector%3Dtax" rel="prev"' in html
    assert f'href="/mismatches/{third}?back=%2Fqueue%3Fsector%3Dtax" rel="next"' in html
    assert 'id="age"' in html and 'id="due"' in html
    # the same list sorted the other way round swaps them
    html = api.client.get(f"/mismatches/{second}", params={"back": back + "&order=asc"}).text
    asc = "back=%2Fqueue%3Fsector%3Dtax%26order%3Dasc"
    assert f'href="/mismatches/{first}?{asc}" rel="next"' in html
    assert f'href="/mismatches/{third}?{asc}" rel="prev"' in html
    # after an action: on to the next item of the list, the list itself after the last
    token = csrf_of(html)
    resp = api.client.post(
        f"/mismatches/{second}/comment",
        data={"csrf_token": token, "note": "looked at it", "back": back},
    )
    assert resp.headers["location"] == f"/mismatches/{third}?back=%2Fqueue%3Fsector%3Dtax"
    resp = api.client.post(
        f"/mismatches/{order[-1]}/comment",
        data={"csrf_token": token, "note": "last one", "back": back},
    )
    assert resp.headers["location"] == back
    # opened from elsewhere (no queue list): no links, and a comment stays on the page
    html = api.client.get(f"/mismatches/{second}").text
    assert 'rel="next"' not in html and 'rel="prev"' not in html
    resp = api.client.post(
        f"/mismatches/{second}/comment",
        data={"csrf_token": token, "note": "again", "back": "/queue"},
    )
    assert resp.headers["location"].startswith(f"/mismatches/{second}?")

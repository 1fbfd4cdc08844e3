"""The citizen page (REST and UI) and the per-rule comparison of the mismatch detail."""

from __future__ import annotations

import logging

import pytest

from tests.integration.api.citizen_cases import AN, NGOC, SECTOR_ONLY, cases  # noqa: F401
from tests.integration.api.test_ui_forms import log_in


@pytest.fixture(scope="module")
def api(cases):  # noqa: F811
    return cases[0]


@pytest.fixture(scope="module")
def ids(cases):  # noqa: F811
    return cases[1]


def by_key(page: dict) -> dict[tuple[str, str], dict]:
    return {(r["sector"], r["record_key"]): r for r in page["records"]}


# ---------------------------------------------------------------------------- citizen page


def test_citizen_page_holds_the_registry_record_and_every_record_of_the_id(api, ids):
    resp = api.get(f"/api/v1/citizens/{AN}", "viewer")
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["citizen_id"] == AN
    assert page["registry_record"]["full_name"] == "Nguyễn Văn An"
    records = by_key(page)
    assert set(records) == {
        ("tax", "MST0001"),
        ("tax", "MST0006"),
        ("banking", "ACC-0003"),
        ("labour", "LAB-01"),
    }
    assert records[("labour", "LAB-01")]["relation"] == "legacy"  # carries the legacy number
    assert records[("tax", "MST0001")]["relation"] == "carries"
    open_rules = {m["rule"] for m in records[("tax", "MST0001")]["open_mismatches"]}
    assert open_rules == {"NAME_MISMATCH", "DUPLICATE_ID"}
    assert records[("banking", "ACC-0003")]["open_mismatches"] == []  # its one is dismissed
    name = {f["field"]: f for f in records[("tax", "MST0001")]["fields"]}["full_name"]
    assert name == {
        "field": "full_name",
        "sector_value": "Nguyễn Văn Anh",
        "other_value": "Nguyễn Văn An",
        "differs": True,
        "parts": [],
    }
    dob = {f["field"]: f for f in records[("tax", "MST0006")]["fields"]}["date_of_birth"]
    assert dob["differs"] and dob["parts"] == ["month", "day"]
    assert [p["positions"] for p in page["id"]["parts"]][:2] == ["digits 1–3", "digit 4"]
    assert page["corrections"] == []


def test_a_record_suggested_as_a_candidate_is_on_the_citizens_page(api, ids):
    page = api.get("/api/v1/citizens/048095001111", "viewer").json()
    records = by_key(page)
    assert records[("tax", "MST0005")]["relation"] == "carries"
    candidate = records[("tax", "MST0004")]
    assert candidate["relation"] == "candidate"
    assert [m["id"] for m in candidate["open_mismatches"]] == [ids["missing"]]
    # The second candidate of the same record: on that citizen's page too.
    assert by_key(api.get(f"/api/v1/citizens/{NGOC}").json())[("tax", "MST0004")]["relation"] == (
        "candidate"
    )


def test_any_spelling_of_the_id_and_its_legacy_number_open_the_same_page(api):
    for spelling in ("001 090 001 234", "001-090-001-234", "٠٠١٠٩٠٠٠١٢٣٤", "012345678"):
        resp = api.get(f"/api/v1/citizens/{spelling}")
        assert resp.status_code == 200, (spelling, resp.text)
        assert resp.json()["citizen_id"] == AN


def test_an_id_known_only_to_a_sector_has_a_page_without_registry_record(api):
    page = api.get(f"/api/v1/citizens/{SECTOR_ONLY}").json()
    assert page["registry_record"] is None
    assert list(by_key(page)) == [("labour", "LAB-03")]
    assert api.get("/api/v1/citizens/999999999999").status_code == 404  # province 999


@pytest.mark.parametrize(
    ("citizen_id", "reason"),
    [
        ("003185000123", "unknown province code"),  # invalid: the scheme's reason
        ("12AB", "other than digits"),
        ("001099000001", "no registry citizen or sector record"),  # valid, unknown
        ("1" * 65, "at most 64"),
    ],
)
def test_invalid_or_unknown_id_is_a_4xx_with_a_reason_and_never_logged(
    api, citizen_id, reason, caplog
):
    with caplog.at_level(logging.INFO):
        resp = api.get(f"/api/v1/citizens/{citizen_id}")
    assert resp.status_code == (422 if len(citizen_id) > 64 else 404)
    assert reason in resp.json()["detail"]
    assert citizen_id not in resp.json()["detail"]
    hub_lines = [r.getMessage() for r in caplog.records if r.name.startswith("hub")]
    assert any("/api/v1/citizens/…" in line for line in hub_lines)
    assert not any(citizen_id in line for line in hub_lines)


def test_every_role_reads_the_page_and_an_anonymous_call_is_refused(api):
    for role in ("viewer", "steward", "operator", "admin"):
        assert api.get(f"/api/v1/citizens/{AN}", role).status_code == 200, role
    assert api.client.get(f"/api/v1/citizens/{AN}").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert api.client.get(f"/api/v1/citizens/{AN}", headers=bad).status_code == 401


def test_each_view_writes_an_audit_row_with_the_citizen(api):
    api.get("/api/v1/citizens/012345678", "operator")  # by the legacy number
    rows = api.get("/api/v1/audit", params={"actor": "operator", "target_type": "citizen"}).json()[
        "items"
    ]
    assert rows[0]["action"] == "view" and rows[0]["target_id"] == AN
    assert rows[0]["detail"] == {"citizen_id": AN, "records": 4}
    by_citizen = api.get("/api/v1/audit", params={"citizen_id": AN, "actor": "operator"})
    assert rows[0]["id"] in [r["id"] for r in by_citizen.json()["items"]]
    before = len(api.get("/api/v1/audit", params={"target_type": "citizen"}).json()["items"])
    api.get("/api/v1/citizens/001099000001", "operator")  # a 404 views nothing
    after = len(api.get("/api/v1/audit", params={"target_type": "citizen"}).json()["items"])
    assert after == before


def test_the_ui_page_is_audited_and_the_queue_search_offers_it(api, ids):
    client = api.client
    log_in(client, "viewer")
    page = client.get(f"/citizens/{AN}")
    assert page.status_code == 200
    assert "Nguyễn Văn Anh" in page.text and "carries the legacy number" in page.text
    assert f'href="/mismatches/{ids["name"]}?back=' in page.text
    rows = api.get("/api/v1/audit", params={"actor": "viewer", "target_type": "citizen"})
    assert rows.json()["items"][0]["target_id"] == AN
    assert client.get("/citizens/003185000123").status_code == 404
    offer = client.get("/queue", params={"q": "001 090 001 234"}).text
    assert f'href="/citizens/{AN}?back=' in offer
    assert "citizen-offer" not in client.get("/queue", params={"q": "MST0001"}).text
    detail = client.get(f"/mismatches/{ids['name']}").text
    assert f'href="/citizens/{AN}?back=' in detail
    client.post("/logout", data={"csrf_token": "x"})


# ---------------------------------------------------------------------- detail, per rule


def compare_of(api, mismatch_id: int) -> dict:
    resp = api.get(f"/api/v1/mismatches/{mismatch_id}", "viewer")
    assert resp.status_code == 200, resp.text
    return resp.json()["compare"]


def test_duplicate_id_sets_every_record_of_the_group_side_by_side(api, ids):
    group = compare_of(api, ids["duplicate"])["group"]
    keys = [(r["sector"], r["record_key"], r["this"]) for r in group["records"]]
    assert keys[0] == ("tax", "MST0001", True)
    # LAB-01 carries the citizen's legacy number, not this ID: not of the group.
    assert set(keys[1:]) == {("tax", "MST0006", False), ("banking", "ACC-0003", False)}
    other = {f["field"]: f for f in group["records"][1]["fields"]}
    assert group["records"][1]["record_key"] == "MST0006"  # this sector first
    assert other["full_name"]["value"] == "Nguyễn Văn Ân" and other["full_name"]["differs"]
    assert other["date_of_birth"]["parts"] == ["month", "day"]
    assert other["sex"]["differs"] is False
    assert not any(f["differs"] for f in group["records"][0]["fields"])
    assert group["more"] is False


def test_id_legacy_shows_the_registry_record_of_the_suggested_current_id(api, ids):
    c = compare_of(api, ids["legacy"])
    assert c["suggested"]["citizen_id"] == AN and c["suggested"]["in_registry"]
    assert c["suggested"]["legacy_id"] == "012345678"
    fields = {f["field"]: f for f in c["suggested"]["fields"]}
    assert fields["full_name"]["other_value"] == "Nguyễn Văn An"
    assert not fields["full_name"]["differs"]
    assert "legacy ID" in c["id"]["sentences"][0]
    assert c["id"]["parts"][0]["positions"] == "digits 1–9"
    assert c["group"] is None


def test_candidates_show_birth_date_sex_and_province_with_the_differing_parts(api, ids):
    c = compare_of(api, ids["missing"])
    first, second = c["candidates"]
    assert first["citizen_id"] == "048095001111" and first["in_registry"]
    assert not any(f["differs"] for f in first["fields"])
    parts = {f["field"]: f for f in second["fields"]}
    assert parts["date_of_birth"]["sector_value"] == "1995-09-09"
    assert parts["date_of_birth"]["other_value"] == "1985-02-03"
    assert parts["date_of_birth"]["parts"] == ["year", "month", "day"]
    assert parts["sex"]["differs"] is False
    assert parts["province_code"] == {
        "field": "province_code",
        "sector_value": "48",
        "other_value": "79",
        "differs": True,
        "parts": [],
    }
    assert "carries no citizen ID" in c["id"]["sentences"][0]
    assert c["id"]["parts"] == [] and c["citizen_id"] is None


def test_id_attributes_inconsistent_says_which_part_of_the_id_says_what(api, ids):
    c = compare_of(api, ids["attributes"])
    parts = {p["field"]: p for p in c["id"]["parts"] if p["field"]}
    assert parts["province_code"]["text"] == "digits 1–3: province 079 → Hồ Chí Minh"
    assert parts["province_code"]["differs"] is False  # "79" and "079" name one province
    assert parts["sex"]["value"] == "F" and parts["sex"]["record_value"] == "M"
    assert parts["sex"]["differs"] is True
    assert parts["date_of_birth"]["value"] == "1985"
    assert parts["date_of_birth"]["record_value"] == "1990-02-03"
    assert parts["date_of_birth"]["differs"] is True
    sentences = c["id"]["sentences"]
    assert "digit 4: century and sex 1 → female, born 1900–1999, but the record holds M." in (
        sentences
    )
    assert c["citizen_id"] == NGOC  # the registry holds the ID


def test_the_detail_page_marks_differences_in_words_and_has_a_legend(api, ids):
    log_in(api.client, "viewer")
    html = api.client.get(f"/mismatches/{ids['duplicate']}").text
    assert 'class="legend"' in html and "Legend:" in html
    assert 'table class="compare group"' in html
    assert '<span class="visually-hidden"> differs from this record</span>' in html
    html = api.client.get(f"/mismatches/{ids['attributes']}").text
    assert "What the ID says" in html and "but the record holds M" in html


# ------------------------------------------------ corrections (last: they change the store)


def test_the_page_lists_corrections_of_its_records_and_candidates_proposing_the_id(api, ids):
    value = api.post(
        f"/api/v1/mismatches/{ids['name']}/corrections",
        "steward",
        json={"kind": "value", "proposed_value": "Nguyễn Văn An", "reason": "registry name"},
    )
    assert value.status_code == 201, value.text
    candidate = api.post(
        f"/api/v1/mismatches/{ids['missing']}/corrections",
        "steward",
        json={"kind": "candidate", "proposed_value": "048095001111"},
    )
    assert candidate.status_code == 201, candidate.text
    on_an = api.get(f"/api/v1/citizens/{AN}", "viewer").json()["corrections"]
    assert [(k["id"], k["sector"], k["record_key"], k["proposed_value"]) for k in on_an] == [
        (value.json()["id"], "tax", "MST0001", "Nguyễn Văn An")
    ]
    on_hoa = api.get("/api/v1/citizens/048095001111", "viewer").json()["corrections"]
    assert [(k["id"], k["kind"], k["status"]) for k in on_hoa] == [
        (candidate.json()["id"], "candidate", "proposed")
    ]
    log_in(api.client, "viewer")
    html = api.client.get("/citizens/048095001111").text
    assert f'data-correction="{candidate.json()["id"]}"' in html

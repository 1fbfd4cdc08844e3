"""Names the console shows for the hub's codes: rules, fields, severities, statuses, actions.

Codes stay English in URLs, forms, the API and the database; pages show these labels, in the
request's locale (see :mod:`hub.web.i18n`); English pages show the codes. An unknown code is
shown as it is."""

from __future__ import annotations

import re

from hub.web import i18n
from hub.web.i18n import N_, gettext

RULES = {
    "ID_MISSING": N_("Citizen ID missing"),
    "ID_INVALID": N_("Citizen ID invalid"),
    "ID_LEGACY": N_("Legacy ID in use"),
    "ID_NOT_IN_REGISTRY": N_("Citizen ID not in the registry"),
    "ID_ATTRIBUTES_INCONSISTENT": N_("ID inconsistent with the person"),
    "NAME_MISMATCH": N_("Name differs"),
    "DOB_MISMATCH": N_("Date of birth differs"),
    "SEX_MISMATCH": N_("Sex differs"),
    "DECEASED_ACTIVE": N_("Deceased but active"),
    "DUPLICATE_ID": N_("Duplicate citizen ID"),
    "PROVINCE_MISMATCH": N_("Province differs"),
}
FIELDS = {
    "citizen_id": N_("Citizen ID"),
    "legacy_id": N_("Legacy ID"),
    "full_name": N_("Full name"),
    "date_of_birth": N_("Date of birth"),
    "sex": N_("Sex"),
    "province_code": N_("Province"),
    "address": N_("Address"),
    "date_of_death": N_("Date of death"),
    "status": N_("Status"),
    "last_activity_date": N_("Last activity"),
}
SEVERITIES = {
    "low": N_("low"),
    "medium": N_("medium"),
    "high": N_("high"),
    "critical": N_("critical"),
}
STATUSES = {
    "open": N_("open"),
    "in_review": N_("in review"),
    "resolved": N_("resolved"),
    "dismissed": N_("dismissed"),
}
ACTIONS = {
    "assign": N_("assign"),
    "unassign": N_("unassign"),
    "resolve": N_("resolve"),
    "dismiss": N_("dismiss"),
    "reopen": N_("reopen"),
    "comment": N_("comment"),
    "opened": N_("opened"),
    "updated": N_("updated"),
    "resolved": N_("resolved"),
    "reopened": N_("reopened"),
    "fixed_at_source": N_("fixed at the source"),
    "record_deleted": N_("record deleted"),
    "approve": N_("approve"),
    "send": N_("send"),
    "withdraw": N_("withdraw"),
    "disable": N_("disable"),
    "enable": N_("enable"),
    "token": N_("new token"),
    "pause": N_("pause"),
    "resume": N_("resume"),
    "restart": N_("restart"),
    "resnapshot": N_("resnapshot"),
}
CORRECTION_STATUSES = {
    "proposed": N_("proposed"),
    "approved": N_("approved"),
    "sent": N_("sent"),
    "confirmed": N_("confirmed"),
    "rejected": N_("rejected"),
    "withdrawn": N_("withdrawn"),
    "acknowledged": N_("acknowledged"),
}
ROLES = {
    "viewer": N_("viewer"),
    "steward": N_("steward"),
    "approver": N_("approver"),
    "operator": N_("operator"),
    "admin": N_("admin"),
}
SORTS = {
    "id": N_("ID"),
    "first_seen_at": N_("First seen"),
    "severity": N_("Severity"),
    "record_key": N_("Record key"),
}
# The default dismissal reasons' labels (hub.config.DEFAULT_DISMISSAL_REASONS) and the name of
# a dismissal without a code; a label an operator configured is shown as written.
DISMISSAL_LABELS = {
    "Same person, transliteration": N_("Same person, transliteration"),
    "Registry wrong": N_("Registry wrong"),
    "Test record": N_("Test record"),
    "Other": N_("Other"),
    "Unspecified": N_("Unspecified"),
}
# What the ID schemes (hub/idschemes) call the parts of an ID, and the fixed things they say.
ID_PARTS = {
    "province": N_("province"),
    "century and sex": N_("century and sex"),
    "birth year": N_("birth year"),
    "serial number": N_("serial number"),
    "legacy CMND number": N_("legacy CMND number"),
    "century": N_("century"),
    "birth date (YYMMDD)": N_("birth date (YYMMDD)"),
    "birth date": N_("birth date"),
    "governorate": N_("governorate"),
    "serial (its last digit: odd = male, even = female)": N_(
        "serial (its last digit: odd = male, even = female)"
    ),
    "check digit": N_("check digit"),
    "legacy number": N_("legacy number"),
    "region": N_("region"),
    "sex": N_("sex"),
    "male": N_("male"),
    "female": N_("female"),
    "a running number": N_("a running number"),
    "not verified (unpublished)": N_("not verified (unpublished)"),
    "encodes nothing about the person; the registry maps it to a current ID": N_(
        "encodes nothing about the person; the registry maps it to a current ID"
    ),
    "legacy": N_("legacy"),
    "all digits": N_("all digits"),
    "encoded": N_("encoded"),
}
_DIGITS = re.compile(r"^digits? (\d+)(?:–(\d+))?$")
_BORN = re.compile(r"^(?:(male|female), )?born (\d{4})–(\d{4})$")


def _label(table: dict[str, str], code: str | None) -> str:
    """The code's name in the request's locale. In English the console shows the codes
    themselves (what the API, exports and the stewards' habits use); the English names are
    the messages the translations are made from."""
    if code is None:
        return ""
    if i18n.current() == i18n.DEFAULT:
        return code
    message = table.get(code)
    return gettext(message) if message else code


def rule(code: str | None) -> str:
    return _label(RULES, code)


def field(code: str | None) -> str:
    return _label(FIELDS, code)


def severity(code: str | None) -> str:
    return _label(SEVERITIES, code)


def status(code: str | None) -> str:
    return _label({**STATUSES, **CORRECTION_STATUSES}, code)


def action(code: str | None) -> str:
    return _label(ACTIONS, code)


def role(code: str | None) -> str:
    return _label(ROLES, code)


def sort(code: str | None) -> str:
    return _label(SORTS, code)


def dismissal(label: str | None) -> str:
    """A dismissal reason's label in the request's locale: the default reasons' are
    translated, a configured one is shown as written (also in English)."""
    if label is None:
        return ""
    message = DISMISSAL_LABELS.get(label)
    return gettext(message) if message and i18n.current() != i18n.DEFAULT else label


def id_part(text: str | None) -> str:
    """A part's name or a fixed meaning from an ID scheme, translated when it is known."""
    if text is None or i18n.current() == i18n.DEFAULT:
        return text or ""
    message = ID_PARTS.get(text)
    if message:
        return gettext(message)
    born = _BORN.match(text)
    if born:
        sex, first, last = born.groups()
        if sex:
            return gettext(
                "%(sex)s, born %(first)s–%(last)s",
                sex=gettext(ID_PARTS[sex]),
                first=first,
                last=last,
            )
        return gettext("born %(first)s–%(last)s", first=first, last=last)
    return text


def id_positions(text: str | None) -> str:
    """``digits 1–3`` / ``digit 4`` in the request's locale."""
    if text is None or i18n.current() == i18n.DEFAULT:
        return text or ""
    m = _DIGITS.match(text)
    if not m:
        return id_part(text)
    first, last = m.groups()
    if last is None:
        return gettext("digit %(n)s", n=first)
    return gettext("digits %(first)s–%(last)s", first=first, last=last)


def install(env) -> None:  # noqa: ANN001 - a jinja2.Environment
    """The labels as Jinja filters: ``{{ m.rule | rule_label }}``."""
    env.filters.update(
        rule_label=rule,
        field_label=field,
        severity_label=severity,
        status_label=status,
        action_label=action,
        role_label=role,
        sort_label=sort,
        id_part_label=id_part,
        id_positions=id_positions,
        dismissal_label=dismissal,
    )

"""registry candidates by several blocking keys: name-key and name-province indexes

Suggestions were found by exact birth date only, so a record whose birth date was also wrong
never found its citizen. Two more look-ups need indexes of their own: the name key
(``hub_name_key``: the folded name's words sorted, or an Arabic name's first and father's
names) with the birth date, for "born within a year"; and the sorted full name with the
province. Both functions are IMMUTABLE SQL that call only pg_catalog (index builds run with
``search_path = pg_catalog`` since PostgreSQL 17, so one may not call the other), which
``reconciliation.suggestions.name_key`` and
``name_sorted`` mirror; the INCLUDE columns make each look-up an index-only scan.
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION hub_name_sorted(n text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT string_agg(w, ' ' ORDER BY w COLLATE "C")
            FROM unnest(string_to_array(n, ' ')) AS w
        $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION hub_name_key(n text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
            SELECT CASE WHEN n ~ '[\\u0600-\\u06FF]'
                        THEN concat_ws(' ', nullif(split_part(n, ' ', 1), ''),
                                       nullif(split_part(n, ' ', 2), ''))
                        ELSE (SELECT string_agg(w, ' ' ORDER BY w COLLATE "C")
                              FROM unnest(string_to_array(n, ' ')) AS w) END
        $$
        """
    )
    op.execute(
        "CREATE INDEX ix_registry_citizens_name_key_dob ON registry_citizens "
        "(hub_name_key(name_folded), date_of_birth) INCLUDE (citizen_id, name_folded)"
    )
    op.execute(
        "CREATE INDEX ix_registry_citizens_name_province ON registry_citizens "
        "(hub_name_sorted(name_folded), province_code, citizen_id) INCLUDE (name_folded)"
    )


def downgrade() -> None:
    op.drop_index("ix_registry_citizens_name_province", table_name="registry_citizens")
    op.drop_index("ix_registry_citizens_name_key_dob", table_name="registry_citizens")
    op.execute("DROP FUNCTION IF EXISTS hub_name_key(text)")
    op.execute("DROP FUNCTION IF EXISTS hub_name_sorted(text)")

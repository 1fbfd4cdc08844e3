-- Test-only: fill `mismatches` with N rows shaped like reconciler output, for timing the API.
-- psql -v n=1000000 -f seed_million.sql (or run through hub's bench script).
INSERT INTO mismatches (sector, record_key, rule, field, severity, status, resolution,
                        citizen_id, province_code, sector_value, registry_value, score,
                        suggestions, values_hash, assignee, first_seen_at, last_seen_at,
                        resolved_at, updated_at)
SELECT (ARRAY['tax','banking','labour','construction'])[1 + g % 4],
       'K' || lpad(g::text, 9, '0'),
       r.rule,
       r.field,
       r.severity,
       s.status,
       CASE s.status WHEN 'resolved' THEN 'fixed_at_source' WHEN 'dismissed' THEN 'false_positive' END,
       lpad(((g * 7919) % 96 + 1)::text, 3, '0') || lpad(((g * 104729) % 1000000000)::text, 9, '0'),
       lpad(((g * 7919) % 96 + 1)::text, 2, '0'),
       'Nguyễn Văn ' || g,
       'Nguyễn Văn An ' || g,
       CASE WHEN r.rule = 'NAME_MISMATCH' THEN 0.8 END,
       -- The suggesting rules carry three registry candidates (IDs as the bench registry
       -- spells them: province 001, century-and-sex 1, 8 digits): each citizen is suggested
       -- for about one record in a million-row store.
       CASE WHEN r.rule IN ('ID_MISSING', 'ID_LEGACY', 'ID_NOT_IN_REGISTRY') THEN
           (SELECT jsonb_agg(jsonb_build_object(
                       'citizen_id', '0011' || lpad((1 + (g * 7 + k * 104729) % :n)::text, 8, '0'),
                       'full_name', 'Nguyễn Văn An ' || g, 'score', 0.9 - k * 0.2,
                       'parts', jsonb_build_object('name', 0.9, 'birth_date', 'same'),
                       'found_by', jsonb_build_array('birth_date'),
                       'why', 'name 0.90 · same birth date'))
            FROM generate_series(0, 2) AS k)
       END,
       md5(g::text),
       CASE WHEN s.status = 'in_review' THEN 'steward' || (g % 5) END,
       now() - ((g % 180) || ' days')::interval - ((g % 86400) || ' seconds')::interval,
       now() - ((g % 30) || ' days')::interval,
       CASE WHEN s.status IN ('resolved', 'dismissed') THEN now() END,
       now()
FROM generate_series(1::bigint, :n) AS g
CROSS JOIN LATERAL (
    SELECT (ARRAY['ID_MISSING','ID_INVALID','ID_LEGACY','ID_NOT_IN_REGISTRY','ID_ATTRIBUTES_INCONSISTENT',
                  'NAME_MISMATCH','DOB_MISMATCH','SEX_MISMATCH','DECEASED_ACTIVE','DUPLICATE_ID',
                  'PROVINCE_MISMATCH'])[1 + (g / 4) % 11] AS rule,
           (ARRAY['citizen_id','citizen_id','legacy_id','citizen_id','citizen_id','full_name',
                  'date_of_birth','sex','status','citizen_id','province_code'])[1 + (g / 4) % 11] AS field,
           (ARRAY['medium','high','low','high','medium','low','medium','high','critical','high',
                  'low'])[1 + (g / 4) % 11] AS severity
) r
CROSS JOIN LATERAL (
    SELECT CASE WHEN g % 20 < 12 THEN 'open' WHEN g % 20 < 13 THEN 'in_review'
                WHEN g % 20 < 19 THEN 'resolved' ELSE 'dismissed' END AS status
) s;
ANALYZE mismatches;

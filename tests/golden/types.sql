-- Golden test for the json format's value conversion (DESIGN.md, "Event format
-- json"): a column for every row of the type table, edge values in every row.
-- tests/integration/test_types_pg.c runs the part above the "-- @changes" line,
-- starts siphon, runs the part below it and compares siphon's output with
-- types.json.jsonl. What differs from run to run reads 0 there: ts_ms,
-- source.ts_ms, source.lsn, source.commit_lsn, source.txId, and the commit LSN
-- in id ("0/0:<sequence in the transaction>").
--
-- The same file runs against a server whose TimeZone, DateStyle,
-- IntervalStyle, extra_float_digits and bytea_output differ, also for this
-- session, and must give the same output. So every input here is read the
-- same under any of those settings: ISO dates, an explicit offset on every
-- timestamptz and timetz, intervals in ISO 8601. The regclass and regtype
-- values name objects in schema extra or pg_catalog, which print the same with
-- PostgreSQL's default search_path and with none.
--
-- Each part is sent as one simple query, where statements outside an explicit
-- transaction block share one implicit transaction; every change is therefore
-- inside BEGIN/COMMIT, so that psql gives the same transactions.

CREATE SCHEMA extra;
CREATE TYPE extra.color AS ENUM ('red');
CREATE TABLE extra.thing (id integer);
CREATE TYPE mood AS ENUM ('happy', 'sad 😢', 'it''s "fine"');
CREATE TYPE pair AS (n integer, s text);
CREATE DOMAIN posnum AS numeric(12, 2) CHECK (VALUE >= 0);
CREATE DOMAIN nonempty AS text CHECK (VALUE <> '');
CREATE DOMAIN intlist AS integer[];

CREATE TABLE types (
    id        integer PRIMARY KEY,
    i2        smallint,
    i4        integer,
    i8        bigint,
    o         oid,
    f4        real,
    f8        double precision,
    num       numeric,
    b         boolean,
    t         text,
    vc        varchar(40),
    c5        char(5),
    nm        name,
    u         uuid,
    mo        mood,
    ip        inet,
    net       cidr,
    mac       macaddr,
    mac8      macaddr8,
    x         xml,
    m         money,
    by        bytea,
    j         json,
    jb        jsonb,
    d         date,
    ts        timestamp,
    tstz      timestamptz,
    tm        time,
    tmtz      timetz,
    iv        interval,
    dnum      posnum,
    dtxt      nonempty,
    pt        point,
    r         int4range,
    comp      pair,
    tsv       tsvector,
    rc        regclass,
    rt        regtype
);
ALTER TABLE types REPLICA IDENTITY FULL;

CREATE TABLE arrays (
    id        integer PRIMARY KEY,
    ia        integer[],
    iaa       integer[][],
    ie        integer[],
    lb        integer[],
    ta        text[],
    na        numeric[],
    fa        double precision[],
    ja        jsonb[],
    da        date[],
    tsa       timestamptz[],
    ba        boolean[],
    bya       bytea[],
    iva       interval[],
    ua        uuid[],
    ea        mood[],
    pta       point[],
    bxa       box[],
    ca        pair[],
    ra        int4range[],
    dna       posnum[],
    dia       intlist
);
ALTER TABLE arrays REPLICA IDENTITY FULL;

-- @changes

BEGIN;
-- 1: ordinary values, as in DESIGN.md's example
INSERT INTO types VALUES (
    1, 1, 42, 9007199254740993, 12345, 1.5, 0.1, '19.90', true,
    'hello', 'varchar', 'ab', 'name', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy',
    '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
    '<a href="x">1 &amp; 2</a>', '19.90', '\x00ff7f80',
    E'{\n  "a" : 1,\n  "b": [ 1, 2.50, 1e400, -0, 1E+2 ],\n\t"s": "x\\ny \\"q\\" \\u00e9 ü"\n}',
    '{"nested": {"arr": [1, [2, {"deep": true}], null], "obj": {}}, "big": 1e400,
      "dec": 12345678901234567890.123, "esc": "tab\t quote\" backslash\\ nl\n ctrl\u0001 😀"}',
    '2026-11-21', '2026-11-21 10:00:00.5', '2026-11-21 15:30:00.5+05:30',
    '10:00:00.5', '10:00:00.5+02', 'P1Y2M3DT4H5M6.5S',
    '19.90', 'domain text', '(1.5,-2)', '[1,10)', ROW(1, 'x'), 'a fat cat',
    'extra.thing', 'extra.color');
-- 2: minimums, negatives, BC, unicode
INSERT INTO types VALUES (
    2, -32768, -2147483648, -9223372036854775808, 0, -3.4028235e38, -1.7976931348623157e308,
    '-0.000', false,
    E'emoji 😀 CJK 漢字 accents éü RTL שלום BOM \uFEFF LS \u2028 NBSP \u00A0 end', 'say "hi" it''s',
    '漢字', 'naïve_名前', '00000000-0000-0000-0000-000000000000', 'sad 😢',
    '::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff',
    '<p>漢字 😀 &lt;tag&gt;</p>', '-92233720368547758.08', '\x',
    '[]', '{}',
    '0001-01-01 BC', '0044-03-15 12:30:00 BC', '0044-03-15 12:30:00+00 BC',
    '00:00:00', '23:59:59.999999-08', 'P-1Y-2M3DT-4H-5M-6.5S',
    '0', 'x', '(-0,0)', 'empty', ROW(NULL, NULL), '', 'pg_class', 'integer[]');
-- 3: maximums, escapes and control characters
INSERT INTO types VALUES (
    3, 32767, 2147483647, 9223372036854775807, 4294967295, 3.4028235e38, 1.7976931348623157e308,
    '123456789012345678901234567890.000000001', true,
    E'quote " backslash \\ tab \t newline \n cr \r bell \x07 esc \x1b unit \x1f del \x7f',
    E'\\x not bytea, {braces}, [brackets]', E'a\tb', E'line\nbreak',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'it''s "fine"',
    '2001:db8::1/64', '192.168.100.128/25', '08-00-2b-01-02-03', '0800.2b01.0203.0405',
    E'<doc>\n  <q a=''"''>"quoted" \\ back</q>\n</doc>', '92233720368547758.07', '\x00',
    '"just a string"', '[1, "two", [3.0], {"four": null}, true, false]',
    '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00',
    '24:00:00', '23:59:59+05:30', 'PT1000000H',
    '9999999999.99', E'quote " backslash \\', '(1e+300,-1e-300)', '(,5]',
    ROW(-1, E'x "y", z\\'), E'''it''''s'' quote\\"',
    'extra.thing', 'timestamp with time zone');
-- 4: NaN, infinity, zero
INSERT INTO types (id, f4, f8, num, b, t, by, j, jb, d, ts, tstz, tm, tmtz, iv, m, x)
VALUES (4, 'NaN', 'NaN', 'NaN', false, '', '\xff', 'null', '"string"',
        'infinity', 'infinity', 'infinity', '12:34:56.789', '00:00:00+00', 'PT0S', '0', '');
-- 5: Infinity
INSERT INTO types (id, f4, f8, num, by, j, jb, d, ts, tstz, tmtz, iv)
VALUES (5, 'Infinity', 'Infinity', 'Infinity', '\xff00', '42', '1e400',
        '-infinity', '-infinity', '-infinity', '01:02:03-03:30', 'PT0.000001S');
-- 6: -Infinity, tiny and inexact floats
INSERT INTO types (id, f4, f8, num, by, j, jb, tm, tmtz, iv)
VALUES (6, '-Infinity', '-Infinity', '-Infinity', '\x00ff7f', '"\u00e9\ud83d\ude00"',
        '[12345678901234567890.123, -0.0, 1e-20, 100]', '23:59:59.000001', '12:00:00+14',
        'P-1D');
-- 7: more floats, dates across a day and month boundary, escapes json keeps as written
INSERT INTO types (id, f4, f8, num, j, d, ts, tstz, tmtz, iv)
VALUES (7, 1e-45, 1e-300, '0.1', '{"nul": "\u0000", "solidus": "\/"}', '2024-02-29',
        '2000-01-01 00:00:00.000001', '2026-03-01 02:00:00+05:30', '06:07:08+05:30:15',
        'P-1Y-1M-1DT-1H-1M-1.000001S');
-- 8, 9: BC timestamps, an offset across a year boundary, negative zero
INSERT INTO types (id, f4, f8, num, ts, tstz)
VALUES (8, 0.1, 5e-324, '-1.50', '0001-01-01 00:00:00 BC', '2025-12-31 23:00:00-08');
INSERT INTO types (id, f4, f8, tstz)
VALUES (9, '-0', '-0', '0001-01-01 00:00:00+00 BC');
-- 10: SQL NULL everywhere
INSERT INTO types (id) VALUES (10);
COMMIT;

BEGIN;
INSERT INTO arrays VALUES (
    1, '{1,NULL,3}', '{{1,2},{3,4}}', '{}', '[0:1]={1,2}',
    ARRAY['plain', 'with "quotes"', 'comma,inside', '{braces}', 'NULL', NULL, E'back\\slash',
          '', ' spaced ', 'emoji 😀 漢字', E'tab\tnl\n', 'null'],
    '{1.50,NaN,-0.001,123456789012345678901234567890.000000001,Infinity,-Infinity}',
    '{NaN,Infinity,-Infinity,0.1,1e-300,-0}',
    ARRAY['{"a": [1, 2], "s": "q\"b\\"}'::jsonb, '"str"', 'null', '12345678901234567890.123'],
    '{2026-11-21,infinity,-infinity,0044-03-15 BC,0001-01-01 BC}',
    ARRAY['2026-11-21 15:30:00.5+05:30', 'infinity', '0001-01-01 00:00:00+00 BC']::timestamptz[],
    '{t,f,NULL}',
    ARRAY['\x'::bytea, '\x00ff', NULL, E'a\\\\b'::bytea],
    '{P1Y2M3DT4H5M6.5S,PT0S,P-1D}',
    '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}',
    ARRAY['happy', 'sad 😢', 'it''s "fine"']::mood[],
    '{"(1,2)","(3.5,-4)"}',
    '{(1,1),(0,0);(2,2),(1,1)}',
    ARRAY[ROW(1, 'x "y", z'), ROW(NULL, NULL)]::pair[],
    '{"[1,10)",empty,"(,5]"}',
    '{19.90,0}',
    '{7,NULL}');
INSERT INTO arrays VALUES (
    2, '{NULL}', '{{{1},{2}},{{3},{4}}}', '{}', '[-2:-1][1:2]={{1,2},{3,4}}',
    '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
    '{}', '{}');
INSERT INTO arrays (id) VALUES (3);
COMMIT;

-- REPLICA IDENTITY FULL: updates and deletes carry the whole old row in "before"
BEGIN;
UPDATE types SET t = 'updated', num = '19.91', tstz = '2026-11-21 10:00:01+00', jb = NULL,
                 iv = NULL
WHERE id = 1;
DELETE FROM types WHERE id = 2;
COMMIT;

BEGIN;
UPDATE arrays SET ia = '{4,5,6}', ta = NULL WHERE id = 1;
DELETE FROM arrays WHERE id = 2;
COMMIT;

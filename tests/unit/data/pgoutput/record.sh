#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Records real pgoutput (proto_version 1) messages from a private PostgreSQL 15
# into the *.txt files next to this script, for tests/unit/test_pgoutput.c and
# the fuzz seeds in tests/fuzz/corpus/pgoutput/.
#
# Each scenario runs its SQL, then reads everything decoded so far with
# pg_logical_slot_get_binary_changes(). Every call starts a new decoding
# session, so each file begins with the Relation (and Type) messages its
# changes need and decodes on its own.
#
# File format: lines starting with '#' are comments; every other line is one
# message: "<lsn> <hex bytes>", the lsn being the WAL position the server
# reported for that message.
#
# Usage (as root, or as a user that can run initdb): record.sh [PGBIN]
# Commit timestamps, xids and LSNs change from run to run; the tests only rely
# on their relations to each other.
set -eu

PGBIN=${1:-/usr/lib/postgresql/15/bin}
OUT=$(cd "$(dirname "$0")" && pwd)
PORT=5499
export PGOPTIONS="-c client_min_messages=warning"
TMP=$(mktemp -d /tmp/pgo-rec.XXXXXX)
DATA=$TMP/data

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "$(id -u)" = 0 ]; then
    chown postgres "$TMP"
fi

cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

as_pg "$PGBIN/initdb" -D "$DATA" -U postgres -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -t 30 -l "$TMP/server.log" \
    -o "-c wal_level=logical -c port=$PORT -c listen_addresses='' -c unix_socket_directories=$TMP" \
    start >/dev/null

psql_run() {
    as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PORT" -U postgres -d postgres "$@"
}

# Tables exist before the slot so that the slot's first decoding sees them.
psql_run >/dev/null <<'SQL'
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE t_basic (id int PRIMARY KEY, name text, qty int, note text);
CREATE TABLE t_full (id int PRIMARY KEY, name text, qty int);
ALTER TABLE t_full REPLICA IDENTITY FULL;
CREATE TABLE t_toast (id int PRIMARY KEY, flag int, body text);
ALTER TABLE t_toast ALTER COLUMN body SET STORAGE EXTERNAL;
CREATE TABLE t_toast_full (id int PRIMARY KEY, flag int, body text);
ALTER TABLE t_toast_full ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE t_toast_full REPLICA IDENTITY FULL;
CREATE TABLE t_parent (id serial PRIMARY KEY, name text);
CREATE TABLE t_child (id serial PRIMARY KEY, parent_id int REFERENCES t_parent (id));
CREATE TABLE t_enum (id int PRIMARY KEY, m mood);
CREATE TABLE t_alter (id int PRIMARY KEY, a text, b text);
CREATE TABLE t_nopk (x int, y text);
CREATE PUBLICATION p FOR ALL TABLES;
SELECT 1 FROM pg_create_logical_replication_slot('rec', 'pgoutput');
SELECT 1 FROM pg_replication_origin_create('upstream');
SQL


capture() {
    name=$1
    shift
    psql_run "$@" >/dev/null
    # A non-transactional message does not flush WAL and the SQL interface
    # decodes only flushed WAL; a checkpoint flushes it and decodes to nothing.
    psql_run -c "CHECKPOINT" >/dev/null
    {
        echo "# pgoutput proto_version 1 messages recorded from PostgreSQL $(as_pg "$PGBIN/postgres" -V | awk '{print $3}') by record.sh"
        echo "# scenario: $name"
        echo "# format: <lsn> <hex bytes>, one message per line"
        psql_run -At -F ' ' -c "SELECT lsn, encode(data, 'hex')
            FROM pg_logical_slot_get_binary_changes('rec', NULL, NULL,
                'proto_version', '1', 'publication_names', 'p', 'messages', 'true')"
    } >"$OUT/$name.txt"
    echo "recorded $name.txt"
}

capture insert_null -c "INSERT INTO t_basic VALUES (1, 'alpha', 10, NULL)"
capture update_plain -c "UPDATE t_basic SET qty = 11 WHERE id = 1"
capture update_key -c "UPDATE t_basic SET id = 2, name = 'beta' WHERE id = 1"
capture update_full -c "INSERT INTO t_full VALUES (1, 'one', 1)" \
    -c "UPDATE t_full SET qty = 2, name = 'uno' WHERE id = 1"
capture delete_key -c "DELETE FROM t_basic WHERE id = 2"
capture delete_full -c "DELETE FROM t_full WHERE id = 1"
capture toast_default -c "INSERT INTO t_toast VALUES (1, 0, repeat('toast-', 500))" \
    -c "UPDATE t_toast SET flag = 1 WHERE id = 1"
capture toast_full -c "INSERT INTO t_toast_full VALUES (1, 0, repeat('toast-', 500))" \
    -c "UPDATE t_toast_full SET flag = 1 WHERE id = 1"
capture truncate <<'SQL'
INSERT INTO t_parent (name) VALUES ('p');
INSERT INTO t_child (parent_id) VALUES (1);
TRUNCATE t_parent RESTART IDENTITY CASCADE;
SQL
capture message <<'SQL'
BEGIN;
INSERT INTO t_basic VALUES (10, 'outbox', 1, 'n');
SELECT 1 FROM pg_logical_emit_message(true, 'outbox', '{"event":"created","id":10}');
COMMIT;
SELECT 1 FROM pg_logical_emit_message(false, 'audit', 'hello');
SQL
capture type_enum -c "INSERT INTO t_enum VALUES (1, 'happy')"
capture alter <<'SQL'
INSERT INTO t_alter VALUES (1, 'a1', 'b1');
ALTER TABLE t_alter ADD COLUMN c int;
INSERT INTO t_alter VALUES (2, 'a2', 'b2', 2);
ALTER TABLE t_alter DROP COLUMN a;
INSERT INTO t_alter VALUES (3, 'b3', 3);
ALTER TABLE t_alter RENAME COLUMN b TO bb;
INSERT INTO t_alter VALUES (4, 'b4', 4);
SQL
capture nopk -c "INSERT INTO t_nopk VALUES (1, NULL), (2, 'two')"
capture origin <<'SQL'
SELECT 1 FROM pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT 1 FROM pg_replication_origin_xact_setup('0/ABCDEF', now());
INSERT INTO t_basic VALUES (20, 'from upstream', 2, NULL);
COMMIT;
SELECT 1 FROM pg_replication_origin_session_reset();
SQL

psql_run -c "SELECT pg_drop_replication_slot('rec')" >/dev/null

# Fuzz seeds: each recording as length-prefixed messages (tests/fuzz/fuzz_pgoutput.c).
SEEDS=$OUT/../../../fuzz/corpus/pgoutput
mkdir -p "$SEEDS"
for f in "$OUT"/*.txt; do
    perl -ne 'next if /^#/ || !/ /; chomp; my (undef, $h) = split / /;
              my $b = pack("H*", $h); print pack("N", length $b), $b' "$f" \
        >"$SEEDS/$(basename "$f" .txt).bin"
done
echo "wrote fuzz seeds to $(cd "$SEEDS" && pwd)"

#!/usr/bin/python3
"""siphon benchmark driver (started by bench/run.sh; see bench/README.md).

Throughput: for each workload a private PostgreSQL 15 gets a template logical
slot, the workload is written, and its end LSN recorded. Every timed consumer
then decodes that identical backlog from its own copy of the template slot
(pg_copy_logical_replication_slot) up to the end LSN. Consumers are rotated
over the rounds; the report gives medians and min-max.

Latency: a pgbench writer at a fixed rate of one-row transactions
(synchronous_commit on), siphon with the file sink; per event, the time from
the transaction's commit timestamp to the return of the fdatasync that made
the event's line durable.

Only the Python standard library; PostgreSQL is driven through psql,
pg_recvlogical, pgbench and pg_ctl.
"""
import argparse
import bisect
import datetime
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PGBIN = "/usr/lib/postgresql/15/bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The row of W1 and of every workload with its shape: bigint pk, 3 ints, a
# 100-character text, timestamptz, numeric, a small jsonb (about 200 bytes).
COLS = ("(id bigint PRIMARY KEY, a int, b int, c int, t text, ts timestamptz, "
        "n numeric(12,2), j jsonb)")
ROW = ("i, (i % 1000)::int, (i % 7)::int, (i * 3 % 100000)::int, "
       "left(repeat(md5(i::text), 4), 100), "
       "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second', "
       "((i % 100000) / 100.0)::numeric(12,2), "
       "jsonb_build_object('k', i % 10, 'tag', 'tag' || (i % 100), 'ok', i % 2 = 0)")

CONSUMERS = {
    # name: (kind, plugin or sink, transport, label)
    "pgoutput": ("recv", "pgoutput", "unix", "pg_recvlogical pgoutput → /dev/null (ceiling)"),
    "wal2json": ("recv", "wal2json", "unix", "pg_recvlogical wal2json fmt 2 → /dev/null"),
    "test_decoding": ("recv", "test_decoding", "unix", "pg_recvlogical test_decoding → /dev/null"),
    "siphon-file": ("siphon", "file", "unix", "siphon json → file (fsync)"),
    "siphon-null": ("siphon", "null", "unix", "siphon json → null"),
    "siphon-filter": ("siphon", "null", "unix", "siphon json → null, filter flow"),
    "siphon-lua": ("siphon", "null", "unix", "siphon json → null, Lua flow renaming a column"),
    "pgoutput-tcp": ("recv", "pgoutput", "tcp", "pg_recvlogical pgoutput → /dev/null, TCP"),
    "siphon-file-tcp": ("siphon", "file", "tcp", "siphon json → file (fsync), TCP"),
    "siphon-null-tcp": ("siphon", "null", "tcp", "siphon json → null, TCP"),
}
DEFAULT_CONSUMERS = list(CONSUMERS)
# The stream's flows of the flow consumers (YAML, indented under the stream).
# The filter passes every change of every workload (all their tables have a
# bigint id > 0), but evaluates the op and a column value for each one. The
# Lua function renames the column t to text (rows of the W1 shape; without an
# after row or a t column the event goes on unchanged).
FLOWS = {
    "siphon-filter": """    flows:
      - filter: "op in ['c', 'u', 'd', 'r'] && (after.id > 0 || before.id > 0)"
""",
    "siphon-lua": """    flows:
      - script:
          inline: |
            function transform(event)
              local row = event.after
              if row ~= nil and row.t ~= nil then
                row.text = row.t
                row.t = nil
              end
              return event
            end
""",
}
# Without --consumers, the flow consumers run on these workloads only.
FLOW_WORKLOADS = ("W1",)
CEILING = "pgoutput"
# A run counts as undisturbed when everything but its consumer and walsender
# (PostgreSQL's background, this driver, the kernel, anything else) used at
# most this share of a core.
QUIET_OTHER = 0.25

current_procs = []  # children to kill if the driver is interrupted


def log(msg):
    ts = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{ts}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# /proc helpers

def proc_cpu(pid):
    """(user, system) CPU seconds of a live process (all its threads), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_busy():
    """CPU-seconds the whole machine has been busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def wait_quiet(max_core, max_wait):
    """Wait until the machine is idle apart from us: other work (a test suite, a
    build) running beside a timed consumer would be measured with it. Returns
    the seconds waited."""
    t0 = time.monotonic()
    said = False
    while True:
        b0 = machine_busy()
        time.sleep(0.5)
        busy = (machine_busy() - b0) / 0.5
        waited = time.monotonic() - t0
        if busy <= max_core or waited >= max_wait:
            if said:
                log(f"machine quiet again ({busy:.0%} of a core busy) after {waited:.0f} s"
                    if busy <= max_core else
                    f"still {busy:.0%} of a core busy after {waited:.0f} s: going on")
            return waited
        if not said:
            log(f"waiting: {busy:.0%} of a core busy with other work")
            said = True


def proc_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(x) for x in f.read().split()}
    except OSError:
        return set()


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def lsn_int(s):
    hi, lo = s.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_str(v):
    return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_rusage(p):
    """Reap p; return (exit code, rusage). Popen.wait would lose the rusage."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru


# --------------------------------------------------------------------------
# The private cluster

class Cluster:
    def __init__(self, workdir, port):
        self.dir = os.path.join(workdir, "pg")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = port
        self.started = False
        self.pm_pid = None

    @staticmethod
    def as_postgres(argv):
        return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + argv

    def init(self):
        os.makedirs(self.sock)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        subprocess.run(self.as_postgres([
            f"{PGBIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL)
        conf = f"""
# siphon benchmark
port = {self.port}
listen_addresses = '127.0.0.1'
unix_socket_directories = '{self.sock}'
max_connections = 100
wal_level = logical
max_wal_senders = 20
max_replication_slots = 64
shared_buffers = 1GB
max_wal_size = 64GB
min_wal_size = 1GB
checkpoint_timeout = 1h
autovacuum = off
track_commit_timestamp = on
"""
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(conf)

    def start(self):
        subprocess.run(self.as_postgres([
            f"{PGBIN}/pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "120",
            "start"]), check=True, stdout=subprocess.DEVNULL)
        self.started = True
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pm_pid = int(f.readline())
        self.psql("CREATE DATABASE bench", db="postgres")

    def stop(self):
        if not self.started:
            return
        subprocess.run(self.as_postgres([
            f"{PGBIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "120", "stop"]),
            stdout=subprocess.DEVNULL)
        self.started = False

    def conninfo(self, transport):
        host = self.sock if transport == "unix" else "127.0.0.1"
        return f"host={host} port={self.port} dbname=bench user=postgres"

    def psql(self, sql, db="bench"):
        r = subprocess.run(
            [f"{PGBIN}/psql", "-X", "-q", "-A", "-t", "-F", " ", "-v", "ON_ERROR_STOP=1",
             "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", db, "-f", "-"],
            input=sql, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"psql failed: {r.stderr.strip()}\nSQL: {sql[:500]}")
        return r.stdout.strip()

    def drop_slot(self, slot, timeout=30):
        """Drop a slot once its walsender has let go of it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql(f"SELECT pg_drop_replication_slot('{slot}') "
                          f"FROM pg_replication_slots WHERE slot_name = '{slot}'")
                return
            except BenchError as e:
                if "is active" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# --------------------------------------------------------------------------
# Workloads

def do_batches(n, per, body):
    """A DO block running body (with $lo, $hi substituted) per batch, one commit each."""
    ntx = max(1, math.ceil(n / per))
    b = body.replace("$lo", f"(batchno * {per} + 1)").replace("$hi", f"least((batchno + 1) * {per}, {n})")
    return (f"DO $do$\nBEGIN\n  FOR batchno IN 0 .. {ntx - 1} LOOP\n    {b};\n    COMMIT;\n"
            f"  END LOOP;\nEND $do$;\n")


class Workload:
    def __init__(self, name, title, table, rows_full, scale):
        self.name = name
        self.title = title
        self.table = table
        self.n = max(1, int(round(rows_full * scale)))
        self.setup = ""  # before the template slot
        self.write = ""  # after it: the WAL every consumer decodes
        self.changes = self.n
        self.txns = 1
        self.has_t = True  # rows of the W1 shape, with the text column t


def make_workloads(scale):
    w = {}

    x = Workload("W1", "inserts, 1,000 rows per transaction", "bench_w1", 1_000_000, scale)
    x.setup = f"CREATE TABLE bench_w1 {COLS};"
    x.write = do_batches(x.n, 1000, f"INSERT INTO bench_w1 SELECT {ROW} "
                                    f"FROM generate_series($lo, $hi) i")
    x.txns = math.ceil(x.n / 1000)
    w[x.name] = x

    x = Workload("W2", "updates then deletes, 1,000 per transaction", "bench_w2", 100_000,
                 scale)
    x.setup = (f"CREATE TABLE bench_w2 {COLS};\n"
               f"INSERT INTO bench_w2 SELECT {ROW} FROM generate_series(1, {x.n}) i;")
    x.write = (do_batches(x.n, 1000, "UPDATE bench_w2 SET a = a + 1, n = n + 1 "
                                     "WHERE id BETWEEN $lo AND $hi")
               + do_batches(x.n, 1000, "DELETE FROM bench_w2 WHERE id BETWEEN $lo AND $hi"))
    x.changes = 2 * x.n
    x.txns = 2 * math.ceil(x.n / 1000)
    w[x.name] = x

    x = Workload("W3", "one-row transactions", "bench_w3", 50_000, scale)
    x.setup = f"CREATE TABLE bench_w3 {COLS};"
    x.write = do_batches(x.n, 1, f"INSERT INTO bench_w3 SELECT {ROW} "
                                 f"FROM generate_series($lo, $hi) i")
    x.txns = x.n
    w[x.name] = x

    x = Workload("W5", "one transaction of all rows", "bench_w5", 5_000_000, scale)
    x.setup = f"CREATE TABLE bench_w5 {COLS};"
    x.write = f"INSERT INTO bench_w5 SELECT {ROW} FROM generate_series(1, {x.n}) i;\n"
    x.txns = 1
    w[x.name] = x

    x = Workload("W6", "20 KiB TOASTed text column, 1,000 rows per transaction", "bench_w6",
                 100_000, scale)
    # STORAGE EXTERNAL: stored out of line, uncompressed, whatever the content.
    x.setup = ("CREATE TABLE bench_w6 (id bigint PRIMARY KEY, a int, body text);\n"
               "ALTER TABLE bench_w6 ALTER COLUMN body SET STORAGE EXTERNAL;")
    x.write = do_batches(x.n, 1000, "INSERT INTO bench_w6 SELECT i, i % 1000, "
                                    "repeat(md5(i::text), 640) FROM generate_series($lo, $hi) i")
    x.txns = math.ceil(x.n / 1000)
    x.has_t = False
    w[x.name] = x

    x = Workload("W7", "updates under REPLICA IDENTITY FULL, 1,000 per transaction", "bench_w7",
                 1_000_000, scale)
    x.setup = (f"CREATE TABLE bench_w7 {COLS};\n"
               "ALTER TABLE bench_w7 REPLICA IDENTITY FULL;\n"
               f"INSERT INTO bench_w7 SELECT {ROW} FROM generate_series(1, {x.n}) i;")
    x.write = do_batches(x.n, 1000, "UPDATE bench_w7 SET a = a + 1, "
                                    "ts = ts + interval '1 second' WHERE id BETWEEN $lo AND $hi")
    x.txns = math.ceil(x.n / 1000)
    w[x.name] = x
    return w


# --------------------------------------------------------------------------
# Consumers

# Extra sink options for every siphon run (--sink-opt KEY=VALUE), e.g. linger.
SINK_OPTS = []


def siphon_config(path, cl, transport, slot, pub, table, sink, out, flows=""):
    sinkdef = f"    type: \"{sink}\"\n"  # quoted: a bare null is YAML's null
    if sink == "file":
        sinkdef += f"    path: {out}\n"
    for k, v in SINK_OPTS:
        sinkdef += f"    {k}: \"{v}\"\n"
    text = f"""# generated by bench/bench.py
sources:
  pg:
    type: postgres
    connection: "{cl.conninfo(transport)}"
    slot: {slot}
    publication: {pub}
    create_slot: false
    create_publication: false
sinks:
  out:
{sinkdef}streams:
  - name: bench
    source: pg
    tables: [public.{table}]
    format: json
    sink: out
{flows}"""
    with open(path, "w") as f:
        f.write(text)


def recv_cmd(cl, transport, slot, plugin, pub, endpos, out):
    host = cl.sock if transport == "unix" else "127.0.0.1"
    cmd = [f"{PGBIN}/pg_recvlogical", "-h", host, "-p", str(cl.port), "-U", "postgres",
           "-d", "bench", "--slot", slot, "--start", "--endpos", endpos, "--no-loop",
           "-f", out]
    if plugin == "pgoutput":
        cmd += ["-o", "proto_version=1", "-o", f"publication_names={pub}"]
    elif plugin == "wal2json":
        cmd += ["-o", "format-version=2"]
    return cmd


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                return n
            n += b.count(b"\n")


def check_flow_output(cname, wl, path):
    """The flow consumers' untimed pass writes to a file: check that the flow
    did its work (the line count, one per change, is checked by the caller)."""
    if cname != "siphon-lua" or not wl.has_t:
        return
    with open(path) as f:
        ev = json.loads(f.readline())
    after = ev.get("after") or {}
    if "t" in after or "text" not in after:
        raise BenchError(f"{cname} on {wl.name}: column t not renamed to text: "
                         f"after has {', '.join(after)}")


def run_consumer(ctx, wl, cname, tag, sizing=False):
    """Copy the template slot, drain it to the end LSN with one consumer, measure.
    sizing: the untimed pass; pg_recvlogical writes a file to size its output,
    siphon with a flow writes to the file sink, so its output can be checked."""
    cl = ctx.cl
    kind, what, transport, _ = CONSUMERS[cname]
    slot = re.sub(r"[^a-z0-9_]", "_", f"c_{wl.name}_{cname}_{tag}".lower())[:63]
    plugin = what if kind == "recv" else "pgoutput"
    cl.psql(f"SELECT pg_copy_logical_replication_slot('{ctx.template}', '{slot}', false, "
            f"'{plugin}')")
    runlog = os.path.join(ctx.rundir, f"{slot}.log")
    out = None
    if kind == "recv":
        out = os.path.join(ctx.workdir, f"{slot}.out") if sizing else "/dev/null"
        cmd = recv_cmd(cl, transport, slot, what, wl.table, ctx.endpos, out)
    else:
        sink = "file" if sizing else what
        if sink == "file":
            out = os.path.join(ctx.workdir, f"{slot}.jsonl")
        cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
        siphon_config(cfg, cl, transport, slot, wl.table, wl.table, sink, out,
                      FLOWS.get(cname, ""))
        cmd = [ctx.siphon, "run", "-c", cfg, "--until-lsn", ctx.endpos, "--log-level", "warn"]

    before = proc_children(cl.pm_pid)
    ws_pid, ws_cpu, hwm = None, None, None
    with open(runlog, "w") as errf:
        if not sizing and ctx.quiet_core is not None:
            ctx.waited += wait_quiet(ctx.quiet_core, ctx.quiet_max)
        busy0 = machine_busy()
        t0 = time.monotonic()
        t0_real = time.time()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        current_procs.append(p)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid != 0:
                t1 = time.monotonic()
                busy1 = machine_busy()
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            # Peak RSS from VmHWM: wait4's ru_maxrss would include this
            # Python process's own RSS, inherited across fork and exec.
            v = proc_hwm_kib(p.pid)
            if v is not None:
                hwm = v
            if ws_pid is None:
                for c in proc_children(cl.pm_pid) - before:
                    if proc_cmdline(c).startswith("postgres: walsender"):
                        ws_pid = c
            if ws_pid is not None:
                v = proc_cpu(ws_pid)
                if v is not None:
                    ws_cpu = v
            time.sleep(0.01)
        current_procs.remove(p)
    # The walsender ends after its client: follow it to its last tick.
    if ws_pid is None:
        for c in proc_children(cl.pm_pid) - before:
            if proc_cmdline(c).startswith("postgres: walsender"):
                ws_pid = c
    deadline = time.monotonic() + 10
    while ws_pid is not None and time.monotonic() < deadline:
        v = proc_cpu(ws_pid)
        if v is None:
            break
        ws_cpu = v
        time.sleep(0.01)
    cl.drop_slot(slot)
    if p.returncode != 0:
        with open(runlog) as f:
            raise BenchError(f"{cname} on {wl.name} exited {p.returncode}: {f.read()[-2000:]}")

    wall = t1 - t0
    r = {
        "consumer": cname, "tag": tag, "wall_s": wall, "rows": wl.changes,
        "rows_per_s": wl.changes / wall,
        "client_user_s": ru.ru_utime, "client_sys_s": ru.ru_stime,
        "client_hwm_kib": hwm, "client_ru_maxrss_kib": ru.ru_maxrss,
        "walsender_user_s": ws_cpu[0] if ws_cpu else None,
        "walsender_sys_s": ws_cpu[1] if ws_cpu else None,
        "out_bytes": None,
    }
    # Everything else the machine did meanwhile (PostgreSQL's background
    # processes, this driver, and anything not ours), in cores.
    r["other_core"] = (busy1 - busy0 - ru.ru_utime - ru.ru_stime
                       - (sum(ws_cpu) if ws_cpu else 0)) / wall
    if out is not None and out != "/dev/null":
        st = os.stat(out)
        r["out_bytes"] = st.st_size
        # From start to the last write into the file, which excludes the
        # time from the last write to the consumer's exit.
        r["last_write_s"] = st.st_mtime - t0_real
        lines = count_lines(out)
        expect = None
        if kind == "siphon":
            expect = wl.changes
        elif what in ("test_decoding", "wal2json"):
            expect = wl.changes + 2 * wl.txns  # BEGIN and COMMIT lines
        if expect is not None and lines != expect:
            raise BenchError(f"{cname} on {wl.name}: {lines} lines in {out}, expected {expect}")
        r["out_lines"] = lines
        check_flow_output(cname, wl, out)
        os.unlink(out)
    return r


# --------------------------------------------------------------------------
# Throughput

class Ctx:
    pass


def run_workload(ctx, wl, consumers, rounds):
    cl = ctx.cl
    log(f"{wl.name}: setup ({wl.title}, {wl.changes:,} changes)")
    cl.psql(wl.setup + f"\nCREATE PUBLICATION {wl.table} FOR TABLE {wl.table};")
    cl.psql("VACUUM ANALYZE")
    cl.psql("CHECKPOINT")
    ctx.template = f"tmpl_{wl.name.lower()}"
    start = cl.psql(f"SELECT lsn FROM pg_create_logical_replication_slot('{ctx.template}', "
                    f"'pgoutput')")
    log(f"{wl.name}: writing the workload")
    t0 = time.monotonic()
    cl.psql("SET synchronous_commit = off;\n" + wl.write)
    write_s = time.monotonic() - t0
    ctx.endpos = cl.psql("SELECT pg_current_wal_insert_lsn()")
    # Flush the table now, so no checkpoint runs while consumers are timed.
    cl.psql("CHECKPOINT")
    wal_bytes = lsn_int(ctx.endpos) - lsn_int(start)
    log(f"{wl.name}: {wal_bytes / 2**20:,.0f} MiB of WAL from {start} to {ctx.endpos}, "
        f"written in {write_s:.1f} s")
    res = {"name": wl.name, "title": wl.title, "rows": wl.changes, "txns": wl.txns,
           "start_lsn": start, "end_lsn": ctx.endpos, "wal_bytes": wal_bytes,
           "write_s": write_s, "sizing": {}, "runs": []}

    # Untimed pass: the reference plugins' output size, checked line counts,
    # the flows' output checked (file sink), and a warm page cache for the
    # first timed round.
    for cname in consumers:
        kind, what, transport, _ = CONSUMERS[cname]
        if (kind == "recv" and transport == "unix") or cname in FLOWS:
            r = run_consumer(ctx, wl, cname, "size", sizing=True)
            res["sizing"][cname] = r
            did = "checked" if cname in FLOWS else "sizing"
            log(f"{wl.name}: {did} {cname}: {r['out_bytes'] / wl.changes:,.0f} B/row, "
                f"{r['out_lines']:,} lines, {r['rows_per_s']:,.0f} rows/s (untimed)")

    n = len(consumers)
    for rnd in range(rounds):
        order = consumers[rnd % n:] + consumers[:rnd % n]
        for cname in order:
            r = run_consumer(ctx, wl, cname, f"r{rnd + 1}")
            r["round"] = rnd + 1
            res["runs"].append(r)
            ws = ""
            if r["walsender_user_s"] is not None:
                ws = f", walsender {(r['walsender_user_s'] + r['walsender_sys_s']) / r['wall_s']:.0%}"
            log(f"{wl.name} round {rnd + 1}: {cname:16s} {r['rows_per_s']:>10,.0f} rows/s "
                f"({r['wall_s']:.2f} s, client "
                f"{(r['client_user_s'] + r['client_sys_s']) / r['wall_s']:.0%}{ws}, "
                f"rss {(r['client_hwm_kib'] or 0) / 1024:.1f} MiB)")
        save(ctx)
    cl.drop_slot(ctx.template)
    cl.psql(f"DROP PUBLICATION {wl.table}; DROP TABLE {wl.table};")
    cl.psql("CHECKPOINT")
    return res


# --------------------------------------------------------------------------
# Latency

PGBENCH_SCRIPT = """INSERT INTO bench_lat (a, b, c, t, ts, n, j) VALUES (:client_id, 1, 2,
  left(repeat(md5(random()::text), 4), 100), clock_timestamp(), 12.34,
  '{"k": 1, "tag": "tag1", "ok": true}');
"""


def mono_to_real_offset():
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of a few samples."""
    best = None
    for _ in range(20):
        a = time.clock_gettime(time.CLOCK_MONOTONIC)
        r = time.clock_gettime(time.CLOCK_REALTIME)
        b = time.clock_gettime(time.CLOCK_MONOTONIC)
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) / 2)
    return best[1]


def perf_works():
    if shutil.which("perf") is None:
        return False
    r = subprocess.run(["perf", "record", "-q", "-k", "mono", "-e",
                        "syscalls:sys_exit_fdatasync", "-o", "/dev/null", "--", "true"],
                       capture_output=True)
    return r.returncode == 0


def io_times_from_perf(data):
    """Writes to the output file (the fd with the most bytes written) and the
    fdatasyncs of it, from perf's syscall tracepoints: returns
    writes [(file size after the write, return time)] and
    syncs [(file size when the fdatasync began, return time)]."""
    r = subprocess.run(["perf", "script", "-i", data, "--ns", "-F", "tid,time,event,trace"],
                       capture_output=True, text=True, check=True)
    ev_re = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+syscalls:(sys_\w+):\s*(.*)$")

    def fd_of(rest):
        return int(rest.split("fd:")[1].split(",")[0].strip(), 16)

    events = []
    for line in r.stdout.splitlines():
        m = ev_re.match(line)
        if m:
            events.append((float(m.group(2)), int(m.group(1)), m.group(3), m.group(4)))
    events.sort()
    pend, done = {}, []  # writes: (time, fd, bytes) once returned
    for t, tid, ev, rest in events:
        if ev in ("sys_enter_write", "sys_enter_fdatasync"):
            pend[tid] = (ev, fd_of(rest))
        elif ev in ("sys_exit_write", "sys_exit_fdatasync"):
            what = pend.pop(tid, None)
            if what is None:
                continue
            ret = int(rest.strip(), 16)
            if ret >= 1 << 63:
                ret -= 1 << 64
            done.append((t, what[0], what[1], ret, tid))
    per_fd = {}
    for t, ev, fd, ret, _ in done:
        if ev == "sys_enter_write" and ret > 0:
            per_fd[fd] = per_fd.get(fd, 0) + ret
    if not per_fd:
        return [], []
    file_fd = max(per_fd, key=per_fd.get)
    # An fdatasync covers what was written before it began: replay in order of
    # return for writes, of entry for fdatasyncs.
    enter_t = {}
    for t, tid, ev, rest in events:
        if ev == "sys_enter_fdatasync":
            enter_t.setdefault(tid, []).append(t)
    seq = []
    for t, ev, fd, ret, tid in done:
        if fd != file_fd:
            continue
        if ev == "sys_enter_write" and ret > 0:
            seq.append((t, 0, ret, t))
        elif ev == "sys_enter_fdatasync":
            seq.append((enter_t[tid].pop(0), 1, 0, t))
    seq.sort()
    size, writes, syncs = 0, [], []
    for _, kind, n, t_ret in seq:
        if kind == 0:
            size += n
            writes.append((size, t_ret))
        else:
            syncs.append((size, t_ret))
    return writes, syncs


def first_covering(marks, offsets):
    """For each offset, the time of the first (size, time) mark whose size
    reaches it, or None. marks are in order of size."""
    keys = [m[0] for m in marks]
    out = []
    for offset in offsets:
        i = bisect.bisect_left(keys, offset)
        out.append(marks[i][1] if i < len(marks) else None)
    return out


class Tailer(threading.Thread):
    """Fallback without perf: stamps each line when it becomes readable (after
    write, before or during fdatasync), a lower bound of the fsynced time."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.stop, self.stamps = path, False, []

    def run(self):
        off, partial = 0, 0
        while not self.stop:
            try:
                with open(self.path, "rb") as f:
                    f.seek(off)
                    b = f.read()
            except OSError:
                b = b""
            if b:
                now = time.time()
                pos = 0
                while True:
                    i = b.find(b"\n", pos)
                    if i < 0:
                        break
                    self.stamps.append((off + i + 1, now))
                    pos = i + 1
                off += pos
            else:
                time.sleep(0.0005)


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def run_latency(ctx, rate, seconds, method, consumer="siphon"):
    """One latency run. consumer "siphon": json to the file sink. consumer
    "recvlogical": the reference, pg_recvlogical + test_decoding to a file
    (include-timestamp), whose COMMIT lines are timed when written (it
    fsyncs only every 10 s)."""
    cl = ctx.cl
    ref = consumer == "recvlogical"
    if ref and method != "perf":
        return None
    slot = f"lat_{consumer}_{rate}"
    plugin = "test_decoding" if ref else "pgoutput"
    cl.psql(f"SELECT pg_create_logical_replication_slot('{slot}', '{plugin}')")
    out = os.path.join(ctx.workdir, f"{slot}.out")
    if ref:
        cmd = [f"{PGBIN}/pg_recvlogical", "-h", cl.sock, "-p", str(cl.port), "-U", "postgres",
               "-d", "bench", "--slot", slot, "--start", "--no-loop", "-f", out,
               "-o", "include-timestamp=1", "-o", "skip-empty-xacts=1"]
    else:
        cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
        siphon_config(cfg, cl, "unix", slot, "bench_lat", "bench_lat", "file", out)
        cmd = [ctx.siphon, "run", "-c", cfg, "--log-level", "warn"]
    perfdata = os.path.join(ctx.workdir, f"{slot}.perf")
    if method == "perf":
        cmd = ["perf", "record", "-q", "-k", "mono", "-o", perfdata, "-e",
               "syscalls:sys_enter_write,syscalls:sys_exit_write,"
               "syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync", "--"] + cmd
    if ctx.quiet_core is not None:
        ctx.waited += wait_quiet(ctx.quiet_core, ctx.quiet_max)
    log(f"latency {rate}/s, {consumer}: starting ({method} timestamps)")
    rows_before = int(cl.psql("SELECT count(*) FROM bench_lat"))
    off0 = mono_to_real_offset()
    errf = open(os.path.join(ctx.rundir, f"{slot}.log"), "w")
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
    current_procs.append(p)
    tail = None
    try:
        deadline = time.monotonic() + 30
        while cl.psql(f"SELECT active_pid IS NOT NULL FROM pg_replication_slots "
                      f"WHERE slot_name = '{slot}'") != "t":
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{consumer} did not start streaming from {slot}")
            time.sleep(0.1)
        time.sleep(1)
        if method == "perf":
            kids = proc_children(p.pid)
            c_pid = min(kids) if kids else None
        else:
            c_pid = p.pid
            tail = Tailer(out)
            tail.start()
        clients = max(4, min(16, rate // 600))
        script = os.path.join(ctx.workdir, "lat.sql")
        with open(script, "w") as f:
            f.write(PGBENCH_SCRIPT)
        pb = [f"{PGBIN}/pgbench", "-n", "-M", "prepared", "-h", cl.sock, "-p", str(cl.port),
              "-U", "postgres", "-c", str(clients), "-j", str(min(2, os.cpu_count() or 1)),
              "-R", str(rate), "-T", str(seconds), "-f", script, "bench"]
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=on")
        log(f"latency {rate}/s, {consumer}: pgbench for {seconds} s, {clients} clients")
        cpu0 = proc_cpu(c_pid)
        t0 = time.monotonic()
        r = subprocess.run(pb, capture_output=True, text=True, env=env)
        t1 = time.monotonic()
        cpu1 = proc_cpu(c_pid)
        if r.returncode != 0:
            raise BenchError(f"pgbench failed: {r.stderr[-2000:]}")
        endpos = cl.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + 120
        want = int(cl.psql("SELECT count(*) FROM bench_lat")) - rows_before
        got, seen = 0, 0
        while True:
            if ref:
                # pg_recvlogical confirms only every 10 s: count its COMMIT lines.
                with open(out, "rb") as f:
                    f.seek(seen)
                    chunk = f.read()
                cut = chunk.rfind(b"\n") + 1
                got += (b"\n" + chunk[:cut]).count(b"\nCOMMIT ")
                seen += cut
                caught_up = got >= want
            else:
                caught_up = cl.psql(f"SELECT confirmed_flush_lsn >= '{endpos}' "
                                    f"FROM pg_replication_slots "
                                    f"WHERE slot_name = '{slot}'") == "t"
            if caught_up:
                break
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{consumer} did not catch up with {endpos} on {slot}")
            time.sleep(0.2)
        hwm = proc_hwm_kib(c_pid)
        os.kill(c_pid, signal.SIGINT if ref else signal.SIGTERM)
        rc, _ = wait_rusage(p)
        current_procs.remove(p)
        if rc not in (0, 1) or (rc != 0 and not ref):
            raise BenchError(f"latency run: {consumer} exited {rc}")
    finally:
        if tail is not None:
            tail.stop = True
        if p.returncode is None:
            p.kill()
            wait_rusage(p)
            current_procs.remove(p)
        errf.close()
    off1 = mono_to_real_offset()
    cl.drop_slot(slot)

    txid_re = re.compile(rb'"txId":(\d+)')
    ts_re = re.compile(rb'"op":"c","ts_ms":(\d+)')
    ends, xids, made = [], [], []
    off = 0
    with open(out, "rb") as f:
        for line in f:
            off += len(line)
            if ref:
                if line.startswith(b"COMMIT "):
                    ends.append(off)
                    xids.append(int(line.split()[1]))
                    made.append(None)
                continue
            ends.append(off)
            xids.append(int(txid_re.search(line).group(1)))
            m = ts_re.search(line)
            made.append(int(m.group(1)) if m else None)
    # Commit timestamps with microseconds (track_commit_timestamp): the same
    # value the commit record carries and source.ts_ms shows in milliseconds.
    rows = cl.psql("CREATE TEMP TABLE x (xid bigint);\nCOPY x FROM STDIN;\n"
                   + "\n".join(str(v) for v in xids) + "\n\\.\n"
                   "SELECT xid, (extract(epoch FROM pg_xact_commit_timestamp(xid::text::xid))"
                   " * 1000000)::bigint FROM x;")
    commit_us = {}
    for line in rows.splitlines():
        a, b = line.split()
        commit_us[int(a)] = int(b)
    written = [None] * len(ends)
    if method == "perf":
        writes, syncs = io_times_from_perf(perfdata)
        offset = (off0 + off1) / 2
        written = first_covering(writes, ends)
        written = [None if w is None else w + offset for w in written]
        durable = first_covering(syncs, ends)
        durable = [None if d is None else d + offset for d in durable]
        os.unlink(perfdata)
    else:
        stamp = dict(tail.stamps)
        durable = [stamp.get(e) for e in ends]
    if ref:
        durable = [None] * len(ends)
    lat, lat_w, lat_made = [], [], []
    # Sanity of the method: no event may be durable before its commit, nor
    # (beyond ts_ms's millisecond truncation) before siphon produced it.
    before_commit = before_made = 0
    for x, d, w, m in zip(xids, durable, written, made):
        c = commit_us[x] / 1e6
        if d is not None:
            lat.append((d - c) * 1000)
            before_commit += d < c
            before_made += m is not None and d * 1000 < m
        if w is not None:
            lat_w.append((w - c) * 1000)
            before_commit += w < c
        if m is not None:
            lat_made.append(m - commit_us[x] / 1000)
    os.unlink(out)
    lat.sort()
    lat_w.sort()
    lat_made.sort()
    tps = re.search(r"tps = ([\d.]+)", r.stdout)
    lag = re.search(r"rate limit schedule lag: avg ([\d.]+) \(max ([\d.]+)\) ms", r.stdout)
    pblat = re.search(r"latency average = ([\d.]+) ms", r.stdout)
    res = {
        "consumer": consumer, "rate": rate, "seconds": seconds, "clients": clients,
        "method": method, "events": len(ends), "timed_events": len(lat) or len(lat_w),
        "before_commit": before_commit, "durable_before_ts_ms": before_made,
        "achieved_tps": float(tps.group(1)) if tps else None,
        "pgbench_latency_avg_ms": float(pblat.group(1)) if pblat else None,
        "pgbench_schedule_lag_avg_ms": float(lag.group(1)) if lag else None,
        "pgbench_schedule_lag_max_ms": float(lag.group(2)) if lag else None,
        "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "written_p50_ms": pct(lat_w, 50), "written_p95_ms": pct(lat_w, 95),
        "written_p99_ms": pct(lat_w, 99), "written_max_ms": lat_w[-1] if lat_w else None,
        "made_p50_ms": pct(lat_made, 50), "made_p99_ms": pct(lat_made, 99),
        "cpu_core": ((cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (t1 - t0)
                     if cpu0 and cpu1 else None),
        "hwm_kib": hwm,
    }
    if ref:
        log(f"latency {rate}/s, {consumer}: {res['events']:,} transactions, achieved "
            f"{res['achieved_tps']:,.0f}/s, commit→written p50 {res['written_p50_ms']:.2f} "
            f"p95 {res['written_p95_ms']:.2f} p99 {res['written_p99_ms']:.2f} "
            f"max {res['written_max_ms']:.2f} ms")
    else:
        k = "" if res["p50_ms"] is not None else "written_"  # no fdatasync: fsync off
        log(f"latency {rate}/s, {consumer}: {res['events']:,} events, achieved "
            f"{res['achieved_tps']:,.0f}/s, commit→{'fsynced' if not k else 'written'} p50 "
            f"{res[k + 'p50_ms']:.2f} p95 {res[k + 'p95_ms']:.2f} p99 {res[k + 'p99_ms']:.2f} "
            f"max {res[k + 'max_ms']:.2f} ms, commit→ts_ms p50 {res['made_p50_ms']:.1f} "
            f"p99 {res['made_p99_ms']:.1f} ms")
    return res


# --------------------------------------------------------------------------
# Profile

def run_profile(ctx, rows, cg_rows, consumer="siphon-null"):
    """Where siphon (json, null sink) spends its CPU on a W1 backlog.

    consumer names the flows of the stream: siphon-null (none), siphon-filter
    or siphon-lua (FLOWS).

    callgrind (exact instruction counts, user space) drains the first cg_rows
    rows; perf (cpu-clock samples, user and kernel; syscall summary) drains all
    rows, natively. pg_recvlogical + pgoutput gets the same syscall summary for
    comparison."""
    cl = ctx.cl
    cg_rows = min(cg_rows, rows)
    wl = make_workloads(rows / 1_000_000)["W1"]
    cl.psql(wl.setup + f"\nCREATE PUBLICATION {wl.table} FOR TABLE {wl.table};")
    cl.psql("VACUUM ANALYZE")
    ctx.template = "tmpl_prof"
    cl.psql(f"SELECT pg_create_logical_replication_slot('{ctx.template}', 'pgoutput')")
    log(f"profile: writing {rows:,} rows")
    body = f"INSERT INTO bench_w1 SELECT {ROW} FROM generate_series($lo, $hi) i"
    cl.psql("SET synchronous_commit = off;\n" + do_batches(cg_rows, 1000, body))
    cg_end = cl.psql("SELECT pg_current_wal_insert_lsn()")
    if rows > cg_rows:
        cl.psql("SET synchronous_commit = off;\n"
                + do_batches(rows - cg_rows, 1000, body.replace("$lo", f"{cg_rows} + $lo")
                             .replace("$hi", f"{cg_rows} + $hi")))
    end = cl.psql("SELECT pg_current_wal_insert_lsn()")
    cl.psql("CHECKPOINT")
    outdir = ctx.outdir
    flows = {"siphon-filter": ", filter flow", "siphon-lua": ", Lua flow"}.get(consumer, "")
    report = [f"# siphon profile: W1 backlog, json format, null sink{flows}, unix socket", "",
              f"- {ctx.results['machine']['siphon']}, {ctx.results['machine']['date_utc']}",
              f"- command: `{ctx.results['command']}`", ""]

    def drain(prefix, tag, endpos, recv=False, sink="null"):
        slot = f"prof_{tag}"
        cl.psql(f"SELECT pg_copy_logical_replication_slot('{ctx.template}', '{slot}', false)")
        if recv:
            cmd = recv_cmd(cl, "unix", slot, "pgoutput", wl.table, endpos, "/dev/null")
        else:
            cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
            out = os.path.join(ctx.workdir, f"{slot}.jsonl")
            siphon_config(cfg, cl, "unix", slot, wl.table, wl.table, sink, out,
                          FLOWS.get(consumer, ""))
            cmd = [ctx.siphon, "run", "-c", cfg, "--until-lsn", endpos, "--log-level", "warn"]
        t0 = time.monotonic()
        r = subprocess.run(prefix + cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        cl.drop_slot(slot)
        if r.returncode != 0:
            raise BenchError(f"profile run failed: {r.stderr[-2000:]}")
        if not recv and sink == "file":
            os.unlink(out)
        return wall, r.stderr

    def head(path, n):
        with open(path) as f:
            return "".join(f.readlines()[:n])

    if shutil.which("valgrind"):
        cg = os.path.join(outdir, "callgrind.out")
        log(f"profile: callgrind, {cg_rows:,} rows")
        wall, _ = drain(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}"], "cg",
                        cg_end)
        for incl in ("no", "yes"):
            r = subprocess.run(["callgrind_annotate", f"--inclusive={incl}", "--threshold=99.5",
                                cg], capture_output=True, text=True)
            name = f"callgrind-{'inclusive' if incl == 'yes' else 'self'}.txt"
            with open(os.path.join(outdir, name), "w") as f:
                f.write(r.stdout)
            report += [f"## callgrind, {'inclusive' if incl == 'yes' else 'self'} "
                       f"({cg_rows:,} rows, {wall:.0f} s under valgrind)", "", "```",
                       head(os.path.join(outdir, name), 60), "```", ""]
    if perf_works():
        pd = os.path.join(outdir, "perf.data")
        log(f"profile: perf record -e cpu-clock, {rows:,} rows")
        wall, _ = drain(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-g", "-o", pd,
                         "--"], "perf", end)
        for sort, name in (("dso,symbol", "perf-symbols.txt"), ("dso", "perf-dso.txt")):
            r = subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children",
                                "--sort", sort, "-g", "none", "--percent-limit", "0.3"],
                               capture_output=True, text=True)
            with open(os.path.join(outdir, name), "w") as f:
                f.write(r.stdout)
            report += [f"## perf cpu-clock samples by {sort} ({rows:,} rows, {wall:.2f} s)", "",
                       "```", head(os.path.join(outdir, name), 70), "```", ""]
        for tag, recv, sink, title in (
                ("siphon-null", False, "null", "siphon, null sink"),
                ("siphon-file", False, "file", "siphon, file sink"),
                ("recvlogical", True, None, "pg_recvlogical pgoutput → /dev/null")):
            log(f"profile: perf trace -s, {tag}")
            wall, err = drain(["perf", "trace", "-s", "-o",
                               os.path.join(outdir, f"syscalls-{tag}.txt"), "--"],
                              f"tr_{tag.replace('-', '_')}", end, recv=recv, sink=sink)
            report += [f"## syscalls per thread, {title} ({rows:,} rows, {wall:.2f} s under "
                       f"perf trace)", "", "```",
                       head(os.path.join(outdir, f"syscalls-{tag}.txt"), 50), "```", ""]
    cl.drop_slot(ctx.template)
    with open(os.path.join(outdir, "profile.md"), "w") as f:
        f.write("\n".join(report))
    log(f"profile written to {outdir}/profile.md")


# --------------------------------------------------------------------------
# Report

def machine_info(siphon):
    info = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count()}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    info["kernel"] = os.uname().release
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    info["postgres"] = out([f"{PGBIN}/postgres", "--version"])
    info["wal2json"] = out(["dpkg-query", "-W", "-f=${Version}", "postgresql-15-wal2json"])
    info["siphon"] = out([siphon, "version"])
    info["siphon_commit"] = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "-C", ROOT, "--no-optional-locks", "status", "--porcelain",
                 "--untracked-files=no", "--", "src", "CMakeLists.txt"])
    info["siphon_tree"] = "modified" if dirty else "clean"
    return info


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt_range(v, f):
    v = [x for x in v if x is not None]
    if not v:
        return "–"
    return f"{f(statistics.median(v))} ({f(min(v))}–{f(max(v))})"


def summarize(wres):
    """Per consumer: medians over rounds, ratios to the same round's ceiling."""
    runs = wres["runs"]
    ceil = {r["round"]: r["rows_per_s"] for r in runs if r["consumer"] == CEILING}
    quiet = {r["round"] for r in runs if r["consumer"] == CEILING
             and r.get("other_core", 0) <= QUIET_OTHER}
    w2j = {r["round"]: r["rows_per_s"] for r in runs if r["consumer"] == "wal2json"}
    ceil_tcp = {r["round"]: r["rows_per_s"] for r in runs if r["consumer"] == "pgoutput-tcp"}
    null = {r["round"]: r["rows_per_s"] for r in runs if r["consumer"] == "siphon-null"}
    file_bytes = None
    out = {}
    for cname in CONSUMERS:
        rs = [r for r in runs if r["consumer"] == cname]
        if not rs:
            continue
        s = {"label": CONSUMERS[cname][3], "n": len(rs)}
        s["rates"] = [r["rows_per_s"] for r in rs]
        s["ratios"] = [r["rows_per_s"] / ceil[r["round"]] for r in rs if r["round"] in ceil]
        s["ratios_quiet"] = [r["rows_per_s"] / ceil[r["round"]] for r in rs
                             if r["round"] in quiet and r.get("other_core", 0) <= QUIET_OTHER]
        s["ratios_tcp"] = [r["rows_per_s"] / ceil_tcp[r["round"]] for r in rs
                           if r["round"] in ceil_tcp and CONSUMERS[cname][2] == "tcp"]
        s["vs_wal2json"] = [r["rows_per_s"] / w2j[r["round"]] for r in rs if r["round"] in w2j]
        # What a flow costs: the throughput lost against the null sink without
        # flows, in the same round.
        s["vs_null_cost"] = [1 - r["rows_per_s"] / null[r["round"]] for r in rs
                             if r["round"] in null]
        s["ws_core"] = [(r["walsender_user_s"] + r["walsender_sys_s"]) / r["wall_s"]
                        for r in rs if r["walsender_user_s"] is not None]
        s["cl_core"] = [(r["client_user_s"] + r["client_sys_s"]) / r["wall_s"] for r in rs]
        s["cl_user_core"] = [r["client_user_s"] / r["wall_s"] for r in rs]
        s["cl_sys_core"] = [r["client_sys_s"] / r["wall_s"] for r in rs]
        s["cl_cpu_per_m"] = [(r["client_user_s"] + r["client_sys_s"]) / r["rows"] * 1e6
                             for r in rs]
        s["rss_mib"] = [r["client_hwm_kib"] / 1024 for r in rs if r["client_hwm_kib"]]
        ob = [r["out_bytes"] for r in rs if r["out_bytes"] is not None]
        if not ob and cname in wres["sizing"]:
            ob = [wres["sizing"][cname]["out_bytes"]]
        s["bytes_per_row"] = (ob[0] / wres["rows"]) if ob else None
        if cname == "siphon-file" and ob:
            file_bytes = s["bytes_per_row"]
        out[cname] = s
    for cname, s in out.items():
        if CONSUMERS[cname][0] == "siphon" and CONSUMERS[cname][1] == "null":
            # The bytes formatted: the flow consumers' checked file from the
            # untimed pass, else siphon-file's.
            s["bytes_per_row_note"] = "(formatted, discarded)"
            if s["bytes_per_row"] is None:
                s["bytes_per_row"] = file_bytes
    return out


def render(results):
    L = []
    m = results["machine"]
    L.append(f"- date: {m['date_utc']}")
    L.append(f"- command: `{results['command']}`")
    L.append(f"- machine: {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB RAM, "
             f"Linux {m['kernel']}, Debian {m.get('debian', '?')}")
    L.append(f"- {m['postgres']}, wal2json {m['wal2json']}; {m['siphon']} "
             f"(commit {m['siphon_commit']}, working tree {m['siphon_tree']})")
    a = results["args"]
    L.append(f"- scale {a['scale']} (row counts below), {a['rounds']} rounds, consumers "
             f"rotated each round")
    if a.get("sink_opts"):
        L.append(f"- siphon sink options beyond the defaults: {', '.join(a['sink_opts'])}")
    L.append("")
    for wname, w in results["workloads"].items():
        s = summarize(w)
        L.append(f"### {wname}: {w['title']}")
        L.append("")
        oc = [r["other_core"] for r in w["runs"] if r.get("other_core") is not None]
        L.append(f"{w['rows']:,} changes in {w['txns']:,} transactions, "
                 f"{w['wal_bytes'] / 2**20:,.0f} MiB of WAL, end LSN {w['end_lsn']}. "
                 + (f"Other CPU on the machine during the timed runs: median {med(oc):.0%} "
                    f"of a core, max {max(oc):.0%}." if oc else ""))
        L.append("")
        L.append("| consumer | rows/s median (min–max) | × ceiling | B/row | walsender CPU | "
                 "client CPU (user+sys) | client CPU-s per M rows | peak RSS |")
        L.append("|---|---|---|---|---|---|---|---|")
        for cname, c in s.items():
            ratio = fmt_range(c['ratios'], lambda x: f'{x:.2f}')
            if c["ratios_tcp"] and cname != "pgoutput-tcp":
                ratio += f"; {med(c['ratios_tcp']):.2f} × TCP ceiling"
            bpr = "–" if c["bytes_per_row"] is None else f"{c['bytes_per_row']:,.0f}"
            if c.get("bytes_per_row_note") and c["bytes_per_row"] is not None:
                bpr += " " + c["bytes_per_row_note"]
            L.append(
                f"| {c['label']} | {fmt_range(c['rates'], lambda x: f'{x:,.0f}')} | "
                f"{ratio} | {bpr} | "
                f"{fmt_range(c['ws_core'], lambda x: f'{x:.0%}')} | "
                f"{med(c['cl_core']):.0%} ({med(c['cl_user_core']):.0%}+{med(c['cl_sys_core']):.0%}) | "
                f"{med(c['cl_cpu_per_m']):.2f} | "
                f"{max(c['rss_mib']):.1f} MiB |")
        L.append("")
        qs = [f"{cname} "
              f"{med(c['ratios_quiet']):.2f} (n={len(c['ratios_quiet'])})"
              for cname, c in s.items() if c["ratios_quiet"] and cname != CEILING]
        if qs:
            L.append(f"× ceiling over undisturbed pairs only (this run and its round's ceiling "
                     f"both with other CPU ≤ {QUIET_OTHER:.0%} of a core): " + "; ".join(qs) + ".")
            L.append("")
        fl = [f"{CONSUMERS[cname][3]} {fmt_range(s[cname]['vs_null_cost'], lambda x: f'{x:.1%}')}"
              for cname in FLOWS if cname in s and s[cname]["vs_null_cost"]]
        if fl:
            L.append("Cost of a flow, 1 − rows/s ÷ rows/s of siphon json → null in the same "
                     "round, median (min–max): " + "; ".join(fl) + ".")
            L.append("")
        for cname in ("siphon-file", "siphon-file-tcp"):
            lw = [r for r in w["runs"] if r["consumer"] == cname and r.get("last_write_s")]
            if lw:
                t = med([r["wall_s"] for r in lw])
                t_lw = med([r["last_write_s"] for r in lw])
                L.append(f"{CONSUMERS[cname][3]}: start to last write into the file "
                         f"{t_lw:.2f} s of {t:.2f} s to exit (medians); "
                         f"{w['rows'] / t_lw:,.0f} rows/s to the last write.")
                L.append("")
    for x in results.get("latency", []):
        if x and "cpu_core" not in x:  # results written before the reference runs existed
            x["cpu_core"], x["hwm_kib"] = x.get("siphon_cpu_core"), x.get("siphon_hwm_kib")
    lat = [x for x in results.get("latency", []) if x and x.get("consumer", "siphon") == "siphon"]
    ref = [x for x in results.get("latency", []) if x and x.get("consumer") == "recvlogical"]
    if lat:
        L.append("### Latency: commit → written and fdatasynced by siphon's file sink")
        L.append("")
        L.append("| rate target | achieved | events | p50 | p95 | p99 | max | "
                 "commit → written p50 / p99 | commit → siphon ts_ms p50 / p99 | siphon CPU | "
                 "siphon peak RSS |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in lat:
            w = ("–" if x.get("written_p50_ms") is None else
                 f"{x['written_p50_ms']:.2f} / {x['written_p99_ms']:.2f} ms")
            def ms(v):
                return "–" if v is None else f"{v:.2f} ms"  # – : fsync off, nothing synced
            L.append(f"| {x['rate']:,}/s | {x['achieved_tps']:,.0f}/s | {x['events']:,} | "
                     f"{ms(x['p50_ms'])} | {ms(x['p95_ms'])} | {ms(x['p99_ms'])} | "
                     f"{ms(x['max_ms'])} | {w} | "
                     f"{x['made_p50_ms']:.1f} / {x['made_p99_ms']:.1f} ms | "
                     f"{x['cpu_core']:.0%} | {(x['hwm_kib'] or 0) / 1024:.1f} MiB |")
        L.append("")
    if ref:
        L.append("Reference, same writer: pg_recvlogical + test_decoding to a file, commit → "
                 "COMMIT line written (it fsyncs only every 10 s):")
        L.append("")
        L.append("| rate target | achieved | transactions | p50 | p95 | p99 | max | client CPU |")
        L.append("|---|---|---|---|---|---|---|---|")
        for x in ref:
            L.append(f"| {x['rate']:,}/s | {x['achieved_tps']:,.0f}/s | {x['events']:,} | "
                     f"{x['written_p50_ms']:.2f} ms | {x['written_p95_ms']:.2f} ms | "
                     f"{x['written_p99_ms']:.2f} ms | {x['written_max_ms']:.2f} ms | "
                     f"{x['cpu_core']:.0%} |")
        L.append("")
    L += render_targets(results)
    return "\n".join(L) + "\n"


def render_targets(results):
    L = ["### Targets", ""]
    ws = results["workloads"]
    rows = []

    def add(what, value, target, ok):
        rows.append(f"| {what} | {value} | {target} | {'met' if ok else 'MISSED'} |")

    if "W1" in ws:
        s = summarize(ws["W1"])
        if "siphon-file" in s and s["siphon-file"]["ratios"]:
            v = med(s["siphon-file"]["ratios"])
            add("W1 file sink, unix: × ceiling (median)", f"{v:.2f}", "≥ 0.90", v >= 0.90)
        if "siphon-file" in s and s["siphon-file"]["vs_wal2json"]:
            v = med(s["siphon-file"]["vs_wal2json"])
            add("W1 file sink, unix: × wal2json fmt 2 (median)", f"{v:.2f}", "≥ 1.5", v >= 1.5)
        if "siphon-null" in s and s["siphon-null"]["ratios"]:
            v = med(s["siphon-null"]["ratios"])
            add("W1 null sink, unix: × ceiling (median)", f"{v:.2f}", "≥ 0.95", v >= 0.95)
            v = med(s["siphon-null"]["cl_core"])
            add("W1 null sink, unix: siphon CPU while draining (median)", f"{v:.2f} core",
                "≤ 0.6 core", v <= 0.6)
        if "siphon-filter" in s and s["siphon-filter"]["vs_null_cost"]:
            c = s["siphon-filter"]["vs_null_cost"]
            add("W1 filter flow cost: 1 − rows/s(filter) ÷ rows/s(null sink) of the same round, "
                "median (min–max)", fmt_range(c, lambda x: f"{x:.1%}"), "≤ 10 %", med(c) <= 0.10)
        if "siphon-lua" in s:
            c = s["siphon-lua"]["rates"]
            add("W1 Lua flow renaming a column: events/s, median (min–max)",
                fmt_range(c, lambda x: f"{x:,.0f}"), "≥ 100,000", med(c) >= 100_000)
    if "W5" in ws:
        s = summarize(ws["W5"])
        v = max((max(c["rss_mib"]) for k, c in s.items() if k.startswith("siphon")), default=None)
        if v is not None:
            add("W5 siphon peak RSS (max over runs)", f"{v:.1f} MiB", "≤ 64 MiB", v <= 64)
    peak = []
    for wname, w in ws.items():
        s = summarize(w)
        for k, c in s.items():
            if k.startswith("siphon"):
                peak.append((max(c["rss_mib"]), wname, k))
    if peak:
        v = max(peak)
        add(f"W1–W7 siphon peak RSS (max: {v[1]} {v[2]})", f"{v[0]:.1f} MiB", "≤ 64 MiB",
            v[0] <= 64)
    for x in results.get("latency", []):
        if (x and x.get("consumer", "siphon") == "siphon" and x["rate"] == 10000
                and x["p99_ms"] is not None):
            add("latency at 10,000 rows/s: p99 commit → fsynced", f"{x['p99_ms']:.2f} ms",
                "≤ 10 ms", x["p99_ms"] <= 10)
    if not rows:
        return []
    return L + ["| target | measured | required | |", "|---|---|---|---|"] + rows + [""]


def save(ctx):
    with open(os.path.join(ctx.outdir, "results.json"), "w") as f:
        json.dump(ctx.results, f, indent=1)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description="siphon vs pg_recvlogical (pgoutput, wal2json, test_decoding) on the same "
                    "WAL, plus commit-to-fsync latency. Starts and stops a private PostgreSQL.")
    ap.add_argument("--siphon", default=os.path.join(ROOT, "build/bench/siphon"))
    ap.add_argument("--quick", action="store_true",
                    help="1/10 of the rows and 10 s latency runs (default: full size, 60 s)")
    ap.add_argument("--scale", type=float, help="fraction of the full row counts (default 1, "
                                                "--quick 0.1)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--workloads", default="W1,W2,W3,W5,W6,W7",
                    help="comma-separated (default all: W1,W2,W3,W5,W6,W7)")
    ap.add_argument("--consumers",
                    help=f"comma-separated subset of {','.join(CONSUMERS)}, for every "
                         f"workload (default: all; {', '.join(FLOWS)} on "
                         f"{', '.join(FLOW_WORKLOADS)} only)")
    ap.add_argument("--latency-rates", default="1000,5000,10000",
                    help="rows/s of the latency runs; empty for none")
    ap.add_argument("--latency-seconds", type=int, help="per rate (default 60, --quick 10)")
    ap.add_argument("--latency-method", choices=["auto", "perf", "tail"], default="auto",
                    help="fsync timestamps from perf syscall tracepoints (auto if it works), "
                         "or tail: when the line becomes readable (a lower bound)")
    ap.add_argument("--no-latency-reference", dest="latency_reference", action="store_false",
                    help="skip the pg_recvlogical + test_decoding latency reference runs")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the comparison: profile siphon (null sink) on a W1 backlog")
    ap.add_argument("--profile-consumer", default="siphon-null",
                    choices=["siphon-null", "siphon-filter", "siphon-lua"],
                    help="the stream profiled: no flow (default), the filter or the Lua flow")
    ap.add_argument("--profile-rows", type=int, default=1_000_000,
                    help="W1 rows for the perf profile (default 1,000,000)")
    ap.add_argument("--callgrind-rows", type=int, default=200_000,
                    help="of which the callgrind run drains the first (default 200,000)")
    ap.add_argument("--quiet-core", type=float, default=0.15,
                    help="before each timed run, wait until the machine's busy CPU is at "
                         "most this many cores (default 0.15; negative: do not wait)")
    ap.add_argument("--quiet-max", type=int, default=600,
                    help="longest wait for a quiet machine, seconds (default 600)")
    ap.add_argument("--sink-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="extra option for siphon's sink in every siphon run, e.g. linger=2ms "
                         "(repeatable; default: none, the sinks' defaults)")
    ap.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    ap.add_argument("--workdir", help="where the cluster and outputs go (default: a new "
                                      "directory in /var/tmp, removed at the end)")
    ap.add_argument("--out", help="results directory (default bench/out/<UTC time>)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    lat_secs = args.latency_seconds or (10 if args.quick else 60)
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    consumers = None  # the defaults, per workload
    if args.consumers is not None:
        consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]
    for c in consumers or []:
        if c not in CONSUMERS:
            ap.error(f"unknown consumer {c}")
    all_w = make_workloads(scale)
    for w in wanted:
        if w not in all_w:
            ap.error(f"unknown workload {w} (W4 is not defined by the issue)")
    rates = [int(x) for x in args.latency_rates.split(",") if x.strip()]
    for kv in args.sink_opt:
        if "=" not in kv:
            ap.error(f"--sink-opt {kv}: expected KEY=VALUE")
        SINK_OPTS.append(tuple(kv.split("=", 1)))
    if not os.access(args.siphon, os.X_OK):
        ap.error(f"no siphon binary at {args.siphon}")

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = args.out or os.path.join(HERE, "out", stamp)
    os.makedirs(outdir, exist_ok=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="siphon-bench-", dir="/var/tmp")
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)

    ctx = Ctx()
    ctx.siphon = os.path.abspath(args.siphon)
    ctx.workdir = workdir
    ctx.outdir = outdir
    ctx.rundir = os.path.join(outdir, "logs")
    os.makedirs(ctx.rundir, exist_ok=True)
    ctx.cl = Cluster(workdir, args.port or free_port())
    ctx.quiet_core = args.quiet_core if args.quiet_core >= 0 else None
    ctx.quiet_max = args.quiet_max
    ctx.waited = 0.0
    ctx.results = {
        "command": os.environ.get("SIPHON_BENCH_CMD", " ".join(sys.argv)),
        "args": {"scale": scale, "rounds": args.rounds, "sink_opts": args.sink_opt, "workloads": wanted,
                 "consumers": consumers or "default", "latency_rates": rates,
                 "latency_seconds": lat_secs},
        "machine": machine_info(ctx.siphon), "workloads": {}, "latency": [],
    }

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)

    ok = False
    t_start = time.monotonic()
    try:
        log(f"work directory {workdir}, results in {outdir}")
        ctx.cl.init()
        ctx.cl.start()
        log(f"PostgreSQL started on port {ctx.cl.port} (socket {ctx.cl.sock})")
        if args.profile:
            run_profile(ctx, args.profile_rows, args.callgrind_rows, args.profile_consumer)
            ok = True
            return 0
        for wname in wanted:
            cs = consumers or [c for c in DEFAULT_CONSUMERS
                               if c not in FLOWS or wname in FLOW_WORKLOADS]
            wres = run_workload(ctx, all_w[wname], cs, args.rounds)
            ctx.results["workloads"][wname] = wres
            save(ctx)
        if rates:
            method = args.latency_method
            if method == "auto":
                method = "perf" if perf_works() else "tail"
            ctx.cl.psql("CREATE TABLE bench_lat (id bigserial PRIMARY KEY, a int, b int, c int, "
                        "t text, ts timestamptz, n numeric(12,2), j jsonb);\n"
                        "CREATE PUBLICATION bench_lat FOR TABLE bench_lat;")
            for rate in rates:
                ctx.results["latency"].append(run_latency(ctx, rate, lat_secs, method))
                save(ctx)
                if args.latency_reference:
                    ctx.results["latency"].append(
                        run_latency(ctx, rate, lat_secs, method, consumer="recvlogical"))
                    save(ctx)
        ctx.results["elapsed_s"] = time.monotonic() - t_start
        ctx.results["waited_for_quiet_s"] = ctx.waited
        save(ctx)
        text = render(ctx.results)
        with open(os.path.join(outdir, "report.md"), "w") as f:
            f.write(text)
        print(text)
        ok = True
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        for p in list(current_procs):
            try:
                p.kill()
            except OSError:
                pass
        ctx.cl.stop()
        if ok and not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            log(f"kept {workdir} (server log: {ctx.cl.logfile})")
        log(f"done in {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())

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
    "pgoutput-tcp": ("recv", "pgoutput", "tcp", "pg_recvlogical pgoutput → /dev/null, TCP"),
    "siphon-file-tcp": ("siphon", "file", "tcp", "siphon json → file (fsync), TCP"),
    "siphon-null-tcp": ("siphon", "null", "tcp", "siphon json → null, TCP"),
}
DEFAULT_CONSUMERS = list(CONSUMERS)
CEILING = "pgoutput"

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

def siphon_config(path, cl, transport, slot, pub, table, sink, out):
    sinkdef = f"    type: \"{sink}\"\n"  # quoted: a bare null is YAML's null
    if sink == "file":
        sinkdef += f"    path: {out}\n"
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
"""
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


def run_consumer(ctx, wl, cname, tag, sizing=False):
    """Copy the template slot, drain it to the end LSN with one consumer, measure."""
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
        if what == "file":
            out = os.path.join(ctx.workdir, f"{slot}.jsonl")
        cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
        siphon_config(cfg, cl, transport, slot, wl.table, wl.table, what, out)
        cmd = [ctx.siphon, "run", "-c", cfg, "--until-lsn", ctx.endpos, "--log-level", "warn"]

    before = proc_children(cl.pm_pid)
    ws_pid, ws_cpu, hwm = None, None, None
    with open(runlog, "w") as errf:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf)
        current_procs.append(p)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid != 0:
                t1 = time.monotonic()
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
            time.sleep(0.02)
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
    if out is not None and out != "/dev/null":
        r["out_bytes"] = os.path.getsize(out)
        lines = count_lines(out)
        expect = None
        if kind == "siphon":
            expect = wl.changes
        elif what in ("test_decoding", "wal2json"):
            expect = wl.changes + 2 * wl.txns  # BEGIN and COMMIT lines
        if expect is not None and lines != expect:
            raise BenchError(f"{cname} on {wl.name}: {lines} lines in {out}, expected {expect}")
        r["out_lines"] = lines
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
    # and a warm page cache for the first timed round.
    for cname in consumers:
        kind, what, transport, _ = CONSUMERS[cname]
        if kind == "recv" and transport == "unix":
            r = run_consumer(ctx, wl, cname, "size", sizing=True)
            res["sizing"][cname] = r
            log(f"{wl.name}: sizing {cname}: {r['out_bytes'] / wl.changes:,.0f} B/row, "
                f"{r['rows_per_s']:,.0f} rows/s (untimed)")

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


def fsync_times_from_perf(data):
    """[(bytes of the file written before the fdatasync began, its return time)]."""
    r = subprocess.run(["perf", "script", "-i", data, "--ns", "-F", "tid,time,event,trace"],
                       capture_output=True, text=True, check=True)
    ev_re = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+syscalls:(sys_\w+):\s*(.*)$")
    events = []
    file_fd = None
    for line in r.stdout.splitlines():
        m = ev_re.match(line)
        if not m:
            continue
        tid, t, ev, rest = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        events.append((t, tid, ev, rest))
        if ev == "sys_enter_fdatasync" and file_fd is None:
            file_fd = int(rest.split("fd:")[1].split(",")[0].strip(), 16)
    events.sort()
    written = 0
    pend_write, pend_sync, syncs = {}, {}, []
    for t, tid, ev, rest in events:
        if ev == "sys_enter_write":
            pend_write[tid] = int(rest.split("fd:")[1].split(",")[0].strip(), 16)
        elif ev == "sys_exit_write":
            fd = pend_write.pop(tid, None)
            ret = int(rest.strip(), 16)
            if ret >= 1 << 63:
                ret -= 1 << 64
            if fd == file_fd and ret > 0:
                written += ret
        elif ev == "sys_enter_fdatasync":
            pend_sync[tid] = written
        elif ev == "sys_exit_fdatasync":
            if tid in pend_sync:
                syncs.append((pend_sync.pop(tid), t))
    return syncs


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


def run_latency(ctx, rate, seconds, method):
    cl = ctx.cl
    slot = f"lat_{rate}"
    cl.psql(f"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')")
    out = os.path.join(ctx.workdir, f"{slot}.jsonl")
    cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
    siphon_config(cfg, cl, "unix", slot, "bench_lat", "bench_lat", "file", out)
    cmd = [ctx.siphon, "run", "-c", cfg, "--log-level", "warn"]
    perfdata = os.path.join(ctx.workdir, f"{slot}.perf")
    if method == "perf":
        cmd = ["perf", "record", "-q", "-k", "mono", "-o", perfdata, "-e",
               "syscalls:sys_enter_write,syscalls:sys_exit_write,"
               "syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync", "--"] + cmd
    log(f"latency {rate}/s: starting siphon ({method} timestamps)")
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
                raise BenchError(f"siphon did not start streaming from {slot}")
            time.sleep(0.1)
        time.sleep(1)
        if method == "perf":
            kids = proc_children(p.pid)
            sp_pid = min(kids) if kids else None
        else:
            sp_pid = p.pid
            tail = Tailer(out)
            tail.start()
        clients = min(32, max(4, rate // 500))
        script = os.path.join(ctx.workdir, "lat.sql")
        with open(script, "w") as f:
            f.write(PGBENCH_SCRIPT)
        pb = [f"{PGBIN}/pgbench", "-n", "-h", cl.sock, "-p", str(cl.port), "-U", "postgres",
              "-c", str(clients), "-j", str(min(2, os.cpu_count() or 1)), "-R", str(rate),
              "-T", str(seconds), "-f", script, "bench"]
        env = dict(os.environ, PGOPTIONS="-c synchronous_commit=on")
        log(f"latency {rate}/s: pgbench for {seconds} s, {clients} clients")
        cpu0 = proc_cpu(sp_pid)
        t0 = time.monotonic()
        r = subprocess.run(pb, capture_output=True, text=True, env=env)
        t1 = time.monotonic()
        cpu1 = proc_cpu(sp_pid)
        if r.returncode != 0:
            raise BenchError(f"pgbench failed: {r.stderr[-2000:]}")
        endpos = cl.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + 120
        while cl.psql(f"SELECT confirmed_flush_lsn >= '{endpos}' FROM pg_replication_slots "
                      f"WHERE slot_name = '{slot}'") != "t":
            if p.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"siphon did not confirm {endpos} on {slot}")
            time.sleep(0.1)
        hwm = proc_hwm_kib(sp_pid)
        os.kill(sp_pid, signal.SIGTERM)
        rc, _ = wait_rusage(p)
        current_procs.remove(p)
        if rc != 0:
            raise BenchError(f"latency run: siphon exited {rc}")
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
    if method == "perf":
        syncs = fsync_times_from_perf(perfdata)
        offset = (off0 + off1) / 2
        keys = [s[0] for s in syncs]
        done = []
        for e in ends:
            i = bisect.bisect_left(keys, e)
            done.append(syncs[i][1] + offset if i < len(syncs) else None)
        os.unlink(perfdata)
    else:
        stamp = dict(tail.stamps)
        done = [stamp.get(e) for e in ends]
    lat, lat_made = [], []
    for e, x, d, m in zip(ends, xids, done, made):
        c = commit_us[x] / 1e6
        if d is not None:
            lat.append((d - c) * 1000)
        if m is not None:
            lat_made.append(m - commit_us[x] / 1000)
    os.unlink(out)
    lat.sort()
    lat_made.sort()
    tps = re.search(r"tps = ([\d.]+)", r.stdout)
    lag = re.search(r"rate limit schedule lag: avg ([\d.]+) \(max ([\d.]+)\) ms", r.stdout)
    pblat = re.search(r"latency average = ([\d.]+) ms", r.stdout)
    res = {
        "rate": rate, "seconds": seconds, "clients": clients, "method": method,
        "events": len(ends), "timed_events": len(lat),
        "achieved_tps": float(tps.group(1)) if tps else None,
        "pgbench_latency_avg_ms": float(pblat.group(1)) if pblat else None,
        "pgbench_schedule_lag_avg_ms": float(lag.group(1)) if lag else None,
        "pgbench_schedule_lag_max_ms": float(lag.group(2)) if lag else None,
        "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
        "max_ms": lat[-1] if lat else None,
        "made_p50_ms": pct(lat_made, 50), "made_p99_ms": pct(lat_made, 99),
        "siphon_cpu_core": ((cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (t1 - t0)
                            if cpu0 and cpu1 else None),
        "siphon_hwm_kib": hwm,
    }
    log(f"latency {rate}/s: {res['events']:,} events, achieved {res['achieved_tps']:,.0f}/s, "
        f"commit→fsynced p50 {res['p50_ms']:.2f} p95 {res['p95_ms']:.2f} "
        f"p99 {res['p99_ms']:.2f} max {res['max_ms']:.2f} ms")
    return res


# --------------------------------------------------------------------------
# Profile

def run_profile(ctx, rows):
    """W1-shaped backlog drained by siphon (null sink) under callgrind and perf."""
    cl = ctx.cl
    wl = make_workloads(rows / 1_000_000)["W1"]
    cl.psql(wl.setup + f"\nCREATE PUBLICATION {wl.table} FOR TABLE {wl.table};")
    cl.psql("VACUUM ANALYZE")
    ctx.template = "tmpl_prof"
    cl.psql(f"SELECT pg_create_logical_replication_slot('{ctx.template}', 'pgoutput')")
    log(f"profile: writing {wl.n:,} rows")
    cl.psql("SET synchronous_commit = off;\n" + wl.write)
    ctx.endpos = cl.psql("SELECT pg_current_wal_insert_lsn()")
    cl.psql("CHECKPOINT")
    outdir = ctx.outdir
    report = []

    def drain(prefix, tag):
        slot = f"prof_{tag}"
        cl.psql(f"SELECT pg_copy_logical_replication_slot('{ctx.template}', '{slot}', false)")
        cfg = os.path.join(ctx.workdir, f"{slot}.yaml")
        siphon_config(cfg, cl, "unix", slot, wl.table, wl.table, "null", None)
        cmd = prefix + [ctx.siphon, "run", "-c", cfg, "--until-lsn", ctx.endpos,
                        "--log-level", "warn"]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        cl.drop_slot(slot)
        if r.returncode != 0:
            raise BenchError(f"profile run failed: {r.stderr[-2000:]}")
        return wall

    if shutil.which("valgrind"):
        cg = os.path.join(outdir, "callgrind.out")
        log("profile: callgrind")
        wall = drain(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}"], "cg")
        for incl in ("no", "yes"):
            r = subprocess.run(["callgrind_annotate", f"--inclusive={incl}", "--threshold=99",
                                cg], capture_output=True, text=True)
            path = os.path.join(outdir, f"callgrind-{'inclusive' if incl == 'yes' else 'self'}.txt")
            with open(path, "w") as f:
                f.write(r.stdout)
        report.append(f"callgrind: {wl.n:,} rows, {wall:.1f} s under valgrind; "
                      f"{outdir}/callgrind-self.txt, callgrind-inclusive.txt")
    if perf_works():
        pd = os.path.join(outdir, "perf.data")
        log("profile: perf record -e cpu-clock")
        wall = drain(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", pd,
                      "--"], "perf")
        for sort, name in (("dso,symbol", "perf-symbols.txt"), ("dso", "perf-dso.txt")):
            r = subprocess.run(["perf", "report", "-i", pd, "--stdio", "--no-children",
                                "--sort", sort, "-g", "none", "--percent-limit", "0.3"],
                               capture_output=True, text=True)
            with open(os.path.join(outdir, name), "w") as f:
                f.write(r.stdout)
        report.append(f"perf cpu-clock: {wl.n:,} rows in {wall:.2f} s; "
                      f"{outdir}/perf-symbols.txt, perf-dso.txt")
    for line in report:
        log(line)


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
    w2j = {r["round"]: r["rows_per_s"] for r in runs if r["consumer"] == "wal2json"}
    file_bytes = None
    out = {}
    for cname in CONSUMERS:
        rs = [r for r in runs if r["consumer"] == cname]
        if not rs:
            continue
        s = {"label": CONSUMERS[cname][3], "n": len(rs)}
        s["rates"] = [r["rows_per_s"] for r in rs]
        s["ratios"] = [r["rows_per_s"] / ceil[r["round"]] for r in rs if r["round"] in ceil]
        s["vs_wal2json"] = [r["rows_per_s"] / w2j[r["round"]] for r in rs if r["round"] in w2j]
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
        if s["bytes_per_row"] is None and CONSUMERS[cname][0] == "siphon":
            s["bytes_per_row_note"] = "(formatted, discarded)"
            s["bytes_per_row"] = file_bytes
    return out


def render(results):
    L = []
    m = results["machine"]
    L.append(f"- date: {m['date_utc']}")
    L.append(f"- command: `{results['command']}`")
    L.append(f"- machine: {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('mem_gib', '?')} GiB RAM, "
             f"Linux {m['kernel']}, Debian {m.get('debian', '?')}")
    L.append(f"- {m['postgres']}, wal2json {m['wal2json']}; siphon {m['siphon']} "
             f"(commit {m['siphon_commit']}, working tree {m['siphon_tree']})")
    a = results["args"]
    L.append(f"- scale {a['scale']} (row counts below), {a['rounds']} rounds, consumers "
             f"rotated each round")
    L.append("")
    for wname, w in results["workloads"].items():
        s = summarize(w)
        L.append(f"### {wname}: {w['title']}")
        L.append("")
        L.append(f"{w['rows']:,} changes in {w['txns']:,} transactions, "
                 f"{w['wal_bytes'] / 2**20:,.0f} MiB of WAL, end LSN {w['end_lsn']}.")
        L.append("")
        L.append("| consumer | rows/s median (min–max) | × ceiling | B/row | walsender CPU | "
                 "client CPU (user+sys) | client CPU-s per M rows | peak RSS |")
        L.append("|---|---|---|---|---|---|---|---|")
        for cname, c in s.items():
            bpr = "–" if c["bytes_per_row"] is None else f"{c['bytes_per_row']:,.0f}"
            if c.get("bytes_per_row_note") and c["bytes_per_row"] is not None:
                bpr += " " + c["bytes_per_row_note"]
            L.append(
                f"| {c['label']} | {fmt_range(c['rates'], lambda x: f'{x:,.0f}')} | "
                f"{fmt_range(c['ratios'], lambda x: f'{x:.2f}')} | {bpr} | "
                f"{fmt_range(c['ws_core'], lambda x: f'{x:.0%}')} | "
                f"{med(c['cl_core']):.0%} ({med(c['cl_user_core']):.0%}+{med(c['cl_sys_core']):.0%}) | "
                f"{med(c['cl_cpu_per_m']):.2f} | "
                f"{max(c['rss_mib']):.1f} MiB |")
        L.append("")
    if results.get("latency"):
        L.append("### Latency: commit → written and fdatasynced by the file sink")
        L.append("")
        L.append("| rate target | achieved | events | p50 | p95 | p99 | max | "
                 "commit → siphon ts_ms p50 / p99 | siphon CPU | siphon peak RSS |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for x in results["latency"]:
            L.append(f"| {x['rate']:,}/s | {x['achieved_tps']:,.0f}/s | {x['events']:,} | "
                     f"{x['p50_ms']:.2f} ms | {x['p95_ms']:.2f} ms | {x['p99_ms']:.2f} ms | "
                     f"{x['max_ms']:.2f} ms | {x['made_p50_ms']:.0f} / {x['made_p99_ms']:.0f} ms | "
                     f"{x['siphon_cpu_core']:.0%} | "
                     f"{(x['siphon_hwm_kib'] or 0) / 1024:.1f} MiB |")
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
        if x["rate"] == 10000:
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
    ap.add_argument("--consumers", default=",".join(DEFAULT_CONSUMERS),
                    help=f"comma-separated subset of {','.join(CONSUMERS)}")
    ap.add_argument("--latency-rates", default="1000,10000",
                    help="rows/s of the latency runs; empty for none")
    ap.add_argument("--latency-seconds", type=int, help="per rate (default 60, --quick 10)")
    ap.add_argument("--latency-method", choices=["auto", "perf", "tail"], default="auto",
                    help="fsync timestamps from perf syscall tracepoints (auto if it works), "
                         "or tail: when the line becomes readable (a lower bound)")
    ap.add_argument("--profile", action="store_true",
                    help="instead of the comparison: profile siphon (null sink) on a W1 backlog")
    ap.add_argument("--profile-rows", type=int, default=200_000)
    ap.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    ap.add_argument("--workdir", help="where the cluster and outputs go (default: a new "
                                      "directory in /var/tmp, removed at the end)")
    ap.add_argument("--out", help="results directory (default bench/out/<UTC time>)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    scale = args.scale if args.scale is not None else (0.1 if args.quick else 1.0)
    lat_secs = args.latency_seconds or (10 if args.quick else 60)
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    consumers = [c.strip() for c in args.consumers.split(",") if c.strip()]
    for c in consumers:
        if c not in CONSUMERS:
            ap.error(f"unknown consumer {c}")
    all_w = make_workloads(scale)
    for w in wanted:
        if w not in all_w:
            ap.error(f"unknown workload {w} (W4 is not defined by the issue)")
    rates = [int(x) for x in args.latency_rates.split(",") if x.strip()]
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
    ctx.results = {
        "command": os.environ.get("SIPHON_BENCH_CMD", " ".join(sys.argv)),
        "args": {"scale": scale, "rounds": args.rounds, "workloads": wanted,
                 "consumers": consumers, "latency_rates": rates,
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
            run_profile(ctx, args.profile_rows)
            ok = True
            return 0
        for wname in wanted:
            wres = run_workload(ctx, all_w[wname], consumers, args.rounds)
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
        ctx.results["elapsed_s"] = time.monotonic() - t_start
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

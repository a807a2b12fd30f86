// SPDX-License-Identifier: Apache-2.0
/*
 * Integration-test harness (see harness.h for the contracts): PostgreSQL
 * clusters made with initdb and run by pg_ctl as the `postgres` user when
 * the tests run as root, redis-server and nats-server as direct children,
 * child processes watched by a thread that samples their peak RSS, temp-dir
 * bookkeeping that keeps everything for inspection when a test fails, a
 * watchdog process that stops PostgreSQL if the test process dies, and a
 * small validating JSON path reader.
 *
 * It does not talk to siphon_core; everything here is plain POSIX, libpq
 * and cmocka so the harness compiles on its own.
 */
#include "lib/harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <locale.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TMP_PREFIX      "/tmp/sp-"
#define PG_FALLBACK_BIN "/usr/lib/postgresql/15/bin"
#define CMD_TIMEOUT_MS  120000 /* initdb, pg_ctl (which waits 60 s itself) */
#define SRV_READY_MS    30000  /* redis-server, nats-server */
#define SRV_STOP_MS     10000
#define LOG_TAIL_BYTES  ((size_t)256 * 1024)
#define WATCH_PERIOD_MS 10
#define REAPER_REC      512 /* one registration: op byte + NUL-terminated data dir */
#define REAPER_MAX      64

struct retired {
    char *dir;
    char *log; /* printed when the dir is kept after a failure; may be NULL */
    struct retired *next;
};

struct live_dir {
    char *dir;
    struct live_dir *next;
};

struct srv;

/* Process-wide harness state; main thread only. */
static struct {
    bool in_group; /* between sp_test_begin and sp_test_finish */
    bool failed;   /* something failed: keep temp dirs */
    bool atexit_set;
    struct retired *retired;  /* dirs whose fate is decided at sp_test_finish */
    struct live_dir *tmpdirs; /* from sp_test_tmpdir, not yet cleaned up */
    struct sp_pg *pgs;        /* started, not yet stopped */
    struct srv *srvs;
    struct sp_proc *procs;
    int reaper_fd; /* our end of the watchdog's socket, or -1 */
    pid_t reaper_pid;
} hs = {.reaper_fd = -1, .reaper_pid = -1};

/* ---- small helpers ------------------------------------------------------- */

static void *h_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "harness: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

static void *h_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count == 0 ? 1 : count, n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "harness: out of memory allocating %zu bytes\n", count * n);
        abort();
    }
    return p;
}

static char *h_xstrndup(const char *s, size_t n)
{
    char *d = h_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *h_xstrdup(const char *s)
{
    return h_xstrndup(s, strlen(s));
}

static char *h_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) {
        fprintf(stderr, "harness: out of memory formatting \"%s\"\n", fmt);
        abort();
    }
    return s;
}

char *sp_test_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = h_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Marks the run failed and fails the current cmocka test with msg. */
static void h_fail(const char *fmt, ...) SP_PRINTF(1, 2);
static void h_fail(const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hs.failed = true;
    fail_msg("%s", msg);
}

void sp_test_mark_failed(void)
{
    hs.failed = true;
}

const char *sp_test_siphon_bin(void)
{
    const char *bin = getenv("SP_SIPHON_BIN");
    if (bin == NULL || bin[0] == '\0') {
        h_fail("SP_SIPHON_BIN is not set (ctest sets it to the built siphon binary)");
        return NULL;
    }
    return bin;
}

static bool keep_tmp(void)
{
    const char *v = getenv("SP_KEEP_TMP");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Copies the file's last LOG_TAIL_BYTES to stderr between marker lines. */
static void print_file(const char *label, const char *path)
{
    size_t len = 0;
    char *text = sp_test_read_file(path, &len);
    fprintf(stderr, "---- %s: %s ----\n", label, path);
    if (text == NULL) {
        fprintf(stderr, "(cannot read: %s)\n", strerror(errno));
    } else {
        const char *from = text;
        if (len > LOG_TAIL_BYTES) {
            fprintf(stderr, "(... %zu bytes skipped)\n", len - LOG_TAIL_BYTES);
            from = text + (len - LOG_TAIL_BYTES);
        }
        fwrite(from, 1, len - (size_t)(from - text), stderr);
        if (len > 0 && text[len - 1] != '\n') {
            fputc('\n', stderr);
        }
    }
    fprintf(stderr, "---- end of %s ----\n", label);
    free(text);
}

/*
 * Async-signal-safe pieces, used by forked children (the watchdog and the
 * code between fork and exec) as well as by the test process.
 */

/* Appends s to dst (capacity cap) at position at; returns the new length. */
static size_t as_cat(char *dst, size_t cap, size_t at, const char *s)
{
    while (*s != '\0' && at + 1 < cap) {
        dst[at++] = *s++;
    }
    dst[at] = '\0';
    return at;
}

static size_t as_cat_uint(char *dst, size_t cap, size_t at, unsigned long v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && at + 1 < cap) {
        dst[at++] = digits[--n];
    }
    dst[at] = '\0';
    return at;
}

/* Reads up to cap-1 bytes of path into buf; returns the length or -1. */
static ssize_t as_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t got = 0;
    while (got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* The state letter from /proc/PID/stat, or 0 if there is no such process. */
static char as_proc_state(pid_t pid)
{
    char path[64];
    char buf[512];
    size_t at = as_cat(path, sizeof(path), 0, "/proc/");
    at = as_cat_uint(path, sizeof(path), at, (unsigned long)pid);
    as_cat(path, sizeof(path), at, "/stat");
    if (as_read_small(path, buf, sizeof(buf)) <= 0) {
        return 0;
    }
    char *paren = strrchr(buf, ')'); /* the command name may contain anything */
    if (paren == NULL || paren[1] != ' ') {
        return 0;
    }
    return paren[2];
}

static bool as_pid_alive(pid_t pid)
{
    if (pid <= 0) {
        return false;
    }
    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    char st = as_proc_state(pid);
    return st != 0 && st != 'Z' && st != 'X';
}

/* The postmaster pid from DATADIR/postmaster.pid if that process is a postgres; else -1. */
static pid_t as_postmaster_pid(const char *datadir)
{
    char path[PATH_MAX];
    char buf[64];
    as_cat(path, sizeof(path), as_cat(path, sizeof(path), 0, datadir), "/postmaster.pid");
    if (as_read_small(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    long pid = 0;
    for (const char *c = buf; *c >= '0' && *c <= '9' && pid < INT_MAX / 10; c++) {
        pid = pid * 10 + (*c - '0');
    }
    if (pid <= 0) {
        return -1;
    }
    /* A stale file may name a reused pid: only signal a process called postgres. */
    char comm_path[64];
    size_t at = as_cat(comm_path, sizeof(comm_path), 0, "/proc/");
    at = as_cat_uint(comm_path, sizeof(comm_path), at, (unsigned long)pid);
    as_cat(comm_path, sizeof(comm_path), at, "/comm");
    if (as_read_small(comm_path, buf, sizeof(buf)) <= 0 || strncmp(buf, "postgres", 8) != 0) {
        return -1;
    }
    return (pid_t)pid;
}

/* SIGQUIT (immediate shutdown) to the postmaster, SIGKILL if it lingers; true if it is gone. */
static bool as_kill_postmaster(pid_t pid)
{
    kill(pid, SIGQUIT);
    for (int i = 0; i < 200 && as_pid_alive(pid); i++) {
        sleep_ms(50);
    }
    if (as_pid_alive(pid)) {
        kill(pid, SIGKILL);
        for (int i = 0; i < 100 && as_pid_alive(pid); i++) {
            sleep_ms(50);
        }
    }
    return !as_pid_alive(pid);
}

static void as_close_from(int first)
{
    if (close_range((unsigned)first, ~0U, 0) == 0) {
        return;
    }
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) {
        max = 65536;
    }
    for (int fd = first; fd < max; fd++) {
        close(fd);
    }
}

bool sp_test_pid_alive(int pid)
{
    return as_pid_alive((pid_t)pid);
}

/* ---- temp dirs and their fate -------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: could not remove \"%s\": %s\n", path, strerror(errno));
    }
    return 0;
}

void sp_test_rm_rf(const char *path)
{
    if (path == NULL || strncmp(path, TMP_PREFIX, strlen(TMP_PREFIX)) != 0 ||
        strstr(path, "/..") != NULL) {
        fprintf(stderr, "harness: refusing to remove \"%s\" (not under %s)\n",
                path == NULL ? "(null)" : path, TMP_PREFIX);
        return;
    }
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: could not remove \"%s\": %s\n", path, strerror(errno));
    }
}

static void keep_dir(const char *dir, const char *log, bool print_log)
{
    if (print_log && log != NULL) {
        print_file("log", log);
    }
    fprintf(stderr, "harness: kept %s\n", dir);
}

/*
 * A server or temp dir is done with. Inside a group run its fate waits for
 * the result; otherwise it is kept if something failed or SP_KEEP_TMP is set.
 */
static void retire(const char *dir, const char *log)
{
    if (hs.in_group) {
        struct retired *r = h_xcalloc(1, sizeof(*r));
        r->dir = h_xstrdup(dir);
        r->log = log != NULL ? h_xstrdup(log) : NULL;
        r->next = hs.retired;
        hs.retired = r;
    } else if (hs.failed || keep_tmp()) {
        keep_dir(dir, log, hs.failed);
    } else {
        sp_test_rm_rf(dir);
    }
}

static char *make_tmpdir(const char *tag, char *err, size_t errlen)
{
    char clean[33];
    size_t n = 0;
    for (const char *c = tag; *c != '\0' && n + 1 < sizeof(clean); c++) {
        bool ok = isalnum((unsigned char)*c) || *c == '-' || *c == '_';
        clean[n++] = *c;
        if (!ok) {
            clean[n - 1] = '_';
        }
    }
    clean[n] = '\0';
    char *dir = sp_test_asprintf(TMP_PREFIX "%s-XXXXXX", clean);
    if (mkdtemp(dir) == NULL) {
        snprintf(err, errlen, "could not create temp dir \"%s\": %s", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    if (chmod(dir, 0755) != 0) {
        snprintf(err, errlen, "could not chmod \"%s\": %s", dir, strerror(errno));
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

char *sp_test_tmpdir(const char *tag)
{
    char err[512];
    char *dir = make_tmpdir(tag != NULL ? tag : "tmp", err, sizeof(err));
    if (dir == NULL) {
        h_fail("%s", err);
        return NULL;
    }
    struct live_dir *ld = h_xcalloc(1, sizeof(*ld));
    ld->dir = h_xstrdup(dir);
    ld->next = hs.tmpdirs;
    hs.tmpdirs = ld;
    return dir;
}

static void forget_tmpdir(const char *dir)
{
    for (struct live_dir **pp = &hs.tmpdirs; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->dir, dir) == 0) {
            struct live_dir *ld = *pp;
            *pp = ld->next;
            free(ld->dir);
            free(ld);
            return;
        }
    }
}

void sp_test_tmpdir_cleanup(char *dir)
{
    if (dir == NULL) {
        return;
    }
    forget_tmpdir(dir);
    retire(dir, NULL);
    free(dir);
}

/* ---- files --------------------------------------------------------------- */

char *sp_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096;
    size_t n = 0;
    char *data = h_xmalloc(cap);
    for (;;) {
        if (cap - n < 2) {
            cap *= 2;
            char *bigger = realloc(data, cap);
            if (bigger == NULL) {
                fprintf(stderr, "harness: out of memory allocating %zu bytes\n", cap);
                abort();
            }
            data = bigger;
        }
        size_t got = fread(data + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr != 0) {
        free(data);
        errno = rerr;
        return NULL;
    }
    data[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return data;
}

void sp_test_write_file(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = h_vasprintf(fmt, ap);
    va_end(ap);
    FILE *f = fopen(path, "w");
    int werr = 0;
    if (f == NULL) {
        werr = errno;
    } else {
        size_t len = strlen(text);
        if (fwrite(text, 1, len, f) != len) {
            werr = errno != 0 ? errno : EIO;
        }
        if (fclose(f) != 0 && werr == 0) {
            werr = errno;
        }
    }
    free(text);
    if (werr != 0) {
        h_fail("could not write \"%s\": %s", path, strerror(werr));
    }
}

size_t sp_test_count_lines(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    char buf[65536];
    size_t lines = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
        for (const char *p = buf; (p = memchr(p, '\n', got - (size_t)(p - buf))) != NULL; p++) {
            lines++;
        }
    }
    fclose(f);
    return lines;
}

char **sp_test_read_lines(const char *path, size_t *n)
{
    char *text = sp_test_read_file(path, NULL);
    size_t count = 0;
    if (text != NULL) {
        for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++) {
            count++;
        }
    }
    char **lines = h_xcalloc(count + 1, sizeof(*lines));
    const char *start = text;
    for (size_t i = 0; i < count; i++) {
        const char *nl = strchr(start, '\n');
        lines[i] = h_xstrndup(start, (size_t)(nl - start));
        start = nl + 1;
    }
    free(text);
    if (n != NULL) {
        *n = count;
    }
    return lines;
}

void sp_test_free_lines(char **lines)
{
    if (lines == NULL) {
        return;
    }
    for (char **l = lines; *l != NULL; l++) {
        free(*l);
    }
    free(lines);
}

/* ---- fork + exec --------------------------------------------------------- */

struct spawn {
    const char *const *argv;
    char *const *envp; /* NULL: the test's environment */
    const char *cwd;   /* NULL: the test's */
    int out_fd;        /* -1: inherit */
    int err_fd;        /* -1: inherit */
    bool switch_user;  /* run as uid/gid */
    uid_t uid;
    gid_t gid;
};

/* What a child that could not exec reports through its close-on-exec pipe. */
struct spawn_report {
    int stage;
    int err;
};

static const char *const spawn_stages[] = {"open /dev/null", "redirect", "chdir", "switch user",
                                           "exec"};

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static void spawn_exec(const struct spawn *sp, int ep, pid_t parent)
{
    struct spawn_report rep = {0, 0};
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull < 0) {
        goto fail;
    }
    rep.stage = 1;
    if (dup2(devnull, 0) < 0 || (sp->out_fd >= 0 && dup2(sp->out_fd, 1) < 0) ||
        (sp->err_fd >= 0 && dup2(sp->err_fd, 2) < 0)) {
        goto fail;
    }
    if (ep != 3 && dup3(ep, 3, O_CLOEXEC) < 0) {
        goto fail;
    }
    ep = 3;
    as_close_from(4);
    rep.stage = 2;
    if (sp->cwd != NULL && chdir(sp->cwd) != 0) {
        goto fail;
    }
    rep.stage = 3;
    if (sp->switch_user &&
        (setgroups(1, &sp->gid) != 0 || setgid(sp->gid) != 0 || setuid(sp->uid) != 0)) {
        goto fail;
    }
    /* After the uid change, which clears it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        signal(sig, SIG_DFL); /* ignored signals would stay ignored across exec */
    }
    rep.stage = 4;
    char *const *envp = sp->envp != NULL ? sp->envp : environ;
    execvpe(sp->argv[0], (char *const *)sp->argv, envp);
fail:
    rep.err = errno;
    while (write(ep, &rep, sizeof(rep)) < 0 && errno == EINTR) {
    }
    _exit(127);
}

/* fork + exec; returns the pid, or -1 with err filled (exec failures included). */
static pid_t spawn_child(const struct spawn *sp, char *err, size_t errlen)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(ep[0]);
        close(ep[1]);
        return -1;
    }
    if (pid == 0) {
        close(ep[0]);
        spawn_exec(sp, ep[1], parent);
    }
    close(ep[1]);
    struct spawn_report rep;
    ssize_t n;
    do {
        n = read(ep[0], &rep, sizeof(rep));
    } while (n < 0 && errno == EINTR);
    close(ep[0]);
    if (n == 0) {
        return pid; /* the pipe closed on exec */
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    if (n != (ssize_t)sizeof(rep)) {
        snprintf(err, errlen, "could not start \"%s\"", sp->argv[0]);
    } else {
        snprintf(err, errlen, "could not start \"%s\": %s: %s", sp->argv[0],
                 spawn_stages[rep.stage], strerror(rep.err));
    }
    return -1;
}

/* Waits for pid up to timeout_ms; SIGKILLs it at the deadline. Returns the raw status or -1. */
static int wait_child(pid_t pid, int timeout_ms, bool *timed_out)
{
    int64_t deadline = now_ms() + timeout_ms;
    int st = 0;
    *timed_out = false;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            return st;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (now_ms() >= deadline) {
            *timed_out = true;
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        sleep_ms(10);
    }
}

/* The environment without PG* variables, which would redirect initdb or pg_ctl. */
static char **env_without_pg(void)
{
    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **env = h_xcalloc(n + 1, sizeof(*env));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "PG", 2) != 0) {
            env[k++] = environ[i];
        }
    }
    env[k] = NULL;
    return env;
}

/*
 * Runs argv to completion (at most timeout_ms) with stdout and stderr
 * appended to out_path. Returns its exit code, or -1 with err filled.
 */
static int run_cmd(const struct spawn *proto, const char *out_path, int timeout_ms, char *err,
                   size_t errlen)
{
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "could not open \"%s\": %s", out_path, strerror(errno));
        return -1;
    }
    dprintf(fd, "$");
    for (const char *const *a = proto->argv; *a != NULL; a++) {
        dprintf(fd, " %s", *a);
    }
    dprintf(fd, "\n");
    char **env = env_without_pg();
    struct spawn sp = *proto;
    sp.envp = env;
    sp.out_fd = fd;
    sp.err_fd = fd;
    pid_t pid = spawn_child(&sp, err, errlen);
    close(fd);
    free(env);
    if (pid < 0) {
        return -1;
    }
    bool timed_out;
    int st = wait_child(pid, timeout_ms, &timed_out);
    if (timed_out) {
        snprintf(err, errlen, "\"%s\" did not finish within %d ms", proto->argv[0], timeout_ms);
        return -1;
    }
    if (st >= 0 && WIFEXITED(st)) {
        return WEXITSTATUS(st);
    }
    snprintf(err, errlen, "\"%s\" was killed by signal %d", proto->argv[0],
             st >= 0 && WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
}

/* ---- watchdog ------------------------------------------------------------ */

/*
 * The watchdog is forked once; it holds one end of a SOCK_SEQPACKET pair
 * and the test keeps the other. Each packet registers ('A') or unregisters
 * ('D') a data dir. When the test process goes away for any reason its end
 * closes, the watchdog reads EOF and stops every postmaster still
 * registered. It runs only async-signal-safe code (the test may have
 * threads when it forks) and static storage.
 */
static char reaper_dirs[REAPER_MAX][REAPER_REC];

static void reaper_note(const char *what, const char *dir)
{
    char msg[REAPER_REC + 128];
    size_t at = as_cat(msg, sizeof(msg), 0, "harness watchdog: test process exited; ");
    at = as_cat(msg, sizeof(msg), at, what);
    at = as_cat(msg, sizeof(msg), at, " ");
    at = as_cat(msg, sizeof(msg), at, dir);
    at = as_cat(msg, sizeof(msg), at, "\n");
    while (write(2, msg, at) < 0 && errno == EINTR) {
    }
}

static void reaper_main(int fd) __attribute__((noreturn));
static void reaper_main(int fd)
{
    setsid(); /* not killed with the test's process group (Ctrl-C) */
    for (int sig = 1; sig < NSIG; sig++) {
        signal(sig, sig == SIGCHLD ? SIG_DFL : SIG_IGN);
    }
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
    }
    if (fd != 3) {
        dup2(fd, 3);
        fd = 3;
    }
    as_close_from(4);
    if (chdir("/") != 0) {
        /* only to let go of the test's cwd */
    }
    char rec[REAPER_REC];
    for (;;) {
        ssize_t n = recv(fd, rec, sizeof(rec), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        rec[sizeof(rec) - 1] = '\0';
        int free_slot = -1;
        for (int i = 0; i < REAPER_MAX; i++) {
            if (reaper_dirs[i][0] == '\0') {
                free_slot = free_slot < 0 ? i : free_slot;
            } else if (strcmp(reaper_dirs[i], rec + 1) == 0) {
                reaper_dirs[i][0] = '\0';
            }
        }
        if (rec[0] == 'A' && free_slot >= 0) {
            as_cat(reaper_dirs[free_slot], REAPER_REC, 0, rec + 1);
        }
    }
    for (int i = 0; i < REAPER_MAX; i++) {
        pid_t pid = reaper_dirs[i][0] != '\0' ? as_postmaster_pid(reaper_dirs[i]) : -1;
        if (pid > 0) {
            bool gone = as_kill_postmaster(pid);
            reaper_note(gone ? "stopped PostgreSQL in" : "could not stop PostgreSQL in",
                        reaper_dirs[i]);
        }
    }
    _exit(0);
}

static void harness_atexit(void);

static void ensure_atexit(void)
{
    if (!hs.atexit_set) {
        hs.atexit_set = true;
        atexit(harness_atexit);
    }
}

static void reaper_start(void)
{
    if (hs.reaper_fd >= 0) {
        return;
    }
    ensure_atexit();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        fprintf(stderr, "harness: no watchdog (socketpair: %s)\n", strerror(errno));
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: no watchdog (fork: %s)\n", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (pid == 0) {
        close(sv[0]);
        reaper_main(sv[1]);
    }
    close(sv[1]);
    hs.reaper_fd = sv[0];
    hs.reaper_pid = pid;
}

static void reaper_send(char op, const char *datadir)
{
    char rec[REAPER_REC];
    if (strlen(datadir) + 2 > sizeof(rec)) {
        fprintf(stderr, "harness: data dir path too long for the watchdog: %s\n", datadir);
        return;
    }
    reaper_start();
    if (hs.reaper_fd < 0) {
        return;
    }
    memset(rec, 0, sizeof(rec));
    rec[0] = op;
    memcpy(rec + 1, datadir, strlen(datadir));
    while (send(hs.reaper_fd, rec, sizeof(rec), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void reaper_stop(void)
{
    if (hs.reaper_fd < 0) {
        return;
    }
    close(hs.reaper_fd);
    hs.reaper_fd = -1;
    bool timed_out;
    wait_child(hs.reaper_pid, 30000, &timed_out);
    hs.reaper_pid = -1;
}

/* ---- child processes ----------------------------------------------------- */

struct sp_proc {
    pid_t pid;
    char *name; /* argv[0], for messages */
    pthread_t watcher;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* signalled when exited becomes true */
    bool exited;          /* mu */
    int status;           /* mu; valid once exited */
    long peak_kib;        /* mu; -1 until the first read */
    struct sp_proc *next; /* hs.procs; main thread */
};

/* Updates peak_kib from VmHWM; p->mu held (or no watcher yet). */
static void proc_sample(struct sp_proc *p)
{
    char path[64];
    char buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    if (as_read_small(path, buf, sizeof(buf)) <= 0) {
        return;
    }
    const char *hwm = strstr(buf, "\nVmHWM:");
    if (hwm == NULL) {
        return; /* a zombie has no memory lines */
    }
    long kib = strtol(hwm + 7, NULL, 10);
    if (kib > p->peak_kib) {
        p->peak_kib = kib;
    }
}

static int encode_status(int st)
{
    if (WIFEXITED(st)) {
        return WEXITSTATUS(st);
    }
    if (WIFSIGNALED(st)) {
        return SP_TEST_PROC_BY_SIGNAL(WTERMSIG(st));
    }
    return SP_TEST_PROC_SIGNALED;
}

/* Samples the RSS and reaps the child; the only place that calls waitpid for it. */
static void *proc_watch(void *arg)
{
    struct sp_proc *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->exited) {
        proc_sample(p);
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid || (r < 0 && errno != EINTR)) {
            p->status = r == p->pid ? encode_status(st) : SP_TEST_PROC_SIGNALED;
            p->exited = true;
            pthread_cond_broadcast(&p->cv);
            break;
        }
        pthread_mutex_unlock(&p->mu);
        sleep_ms(WATCH_PERIOD_MS);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int open_out(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

/* Starts argv with output to the files; NULL with err filled on failure. */
static struct sp_proc *proc_start(const char *const argv[], const char *out_path,
                                  const char *err_path, char *err, size_t errlen)
{
    int out_fd = -1;
    int err_fd = -1;
    struct sp_proc *p = NULL;
    if (out_path != NULL && (out_fd = open_out(out_path)) < 0) {
        snprintf(err, errlen, "could not open \"%s\": %s", out_path, strerror(errno));
        goto out;
    }
    if (err_path != NULL && out_path != NULL && strcmp(err_path, out_path) == 0) {
        err_fd = out_fd;
    } else if (err_path != NULL && (err_fd = open_out(err_path)) < 0) {
        snprintf(err, errlen, "could not open \"%s\": %s", err_path, strerror(errno));
        goto out;
    }
    struct spawn sp = {.argv = argv, .out_fd = out_fd, .err_fd = err_fd};
    fflush(NULL);
    pid_t pid = spawn_child(&sp, err, errlen);
    if (pid < 0) {
        goto out;
    }
    p = h_xcalloc(1, sizeof(*p));
    p->pid = pid;
    p->name = h_xstrdup(argv[0]);
    p->peak_kib = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    proc_sample(p);
    int rc = pthread_create(&p->watcher, NULL, proc_watch, p);
    if (rc != 0) {
        fprintf(stderr, "harness: pthread_create: %s\n", strerror(rc));
        abort();
    }
    p->next = hs.procs;
    hs.procs = p;
out:
    if (err_fd >= 0 && err_fd != out_fd) {
        close(err_fd);
    }
    if (out_fd >= 0) {
        close(out_fd);
    }
    return p;
}

struct sp_proc *sp_test_proc_start(const char *const argv[], const char *stdout_path,
                                   const char *stderr_path)
{
    char err[1024];
    ensure_atexit();
    struct sp_proc *p = proc_start(argv, stdout_path, stderr_path, err, sizeof(err));
    if (p == NULL) {
        h_fail("%s", err);
    }
    return p;
}

int sp_test_proc_signal(struct sp_proc *p, int sig)
{
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    /* Holding mu keeps the watcher from reaping, so the pid cannot be reused under us. */
    if (p->exited) {
        errno = ESRCH;
        rc = -1;
    } else {
        proc_sample(p);
        rc = kill(p->pid, sig);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int sp_test_proc_wait(struct sp_proc *p, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t ns = (int64_t)deadline.tv_nsec + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
    deadline.tv_sec += (time_t)(ns / 1000000000);
    deadline.tv_nsec = (long)(ns % 1000000000);
    pthread_mutex_lock(&p->mu);
    while (!p->exited) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int st = p->exited ? p->status : SP_TEST_PROC_TIMEOUT;
    pthread_mutex_unlock(&p->mu);
    return st;
}

long sp_test_proc_peak_rss_kib(struct sp_proc *p)
{
    pthread_mutex_lock(&p->mu);
    if (!p->exited) {
        proc_sample(p);
    }
    long kib = p->peak_kib;
    pthread_mutex_unlock(&p->mu);
    return kib;
}

bool sp_test_proc_alive(struct sp_proc *p)
{
    bool alive = false;
    pthread_mutex_lock(&p->mu);
    if (!p->exited) {
        /* The watcher polls; WNOWAIT sees an exit at once without reaping. */
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        int rc = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT);
        alive = rc == 0 && si.si_pid == 0;
    }
    pthread_mutex_unlock(&p->mu);
    return alive;
}

int sp_test_proc_pid(const struct sp_proc *p)
{
    return (int)p->pid;
}

void sp_test_proc_free(struct sp_proc *p)
{
    if (p == NULL) {
        return;
    }
    sp_test_proc_signal(p, SIGKILL);
    if (sp_test_proc_wait(p, 60000) == SP_TEST_PROC_TIMEOUT) {
        fprintf(stderr, "harness: \"%s\" (pid %d) survives SIGKILL; waiting\n", p->name,
                (int)p->pid);
    }
    pthread_join(p->watcher, NULL);
    for (struct sp_proc **pp = &hs.procs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->name);
    free(p);
}

/* ---- waiting, ports ------------------------------------------------------ */

bool sp_test_wait_until(bool (*cond)(void *ctx), void *ctx, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int64_t delay = 10;
    for (;;) {
        if (cond(ctx)) {
            return true;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return false;
        }
        sleep_ms(delay < left ? delay : left);
        delay = delay * 2 > 50 ? 50 : delay * 2;
    }
}

int sp_test_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        h_fail("could not find a free port: %s", strerror(e));
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

int sp_test_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- PostgreSQL ---------------------------------------------------------- */

struct sp_pg {
    char *dir; /* temp dir, owned by the postgres user when we are root */
    char *datadir;
    char *log;     /* server log (pg_ctl -l) */
    char *ctl_log; /* initdb and pg_ctl output */
    char *conninfo;
    char *conninfo_unix;
    int port;
    bool running;
    bool as_pg_user;
    uid_t uid;
    gid_t gid;
    struct sp_pg *next; /* hs.pgs */
};

static bool executable(const char *path)
{
    return access(path, X_OK) == 0;
}

/* The PostgreSQL bin dir: $SP_PG_BINDIR, `pg_config --bindir`, or Debian's 15. */
static const char *pg_bindir(void)
{
    static char dir[PATH_MAX];
    if (dir[0] != '\0') {
        return dir;
    }
    char probe[PATH_MAX + 16];
    const char *env = getenv("SP_PG_BINDIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s", env);
        return dir;
    }
    FILE *f = popen("pg_config --bindir 2>/dev/null", "r");
    if (f != NULL) {
        if (fgets(dir, sizeof(dir), f) == NULL) {
            dir[0] = '\0';
        }
        pclose(f);
        dir[strcspn(dir, "\r\n")] = '\0';
        snprintf(probe, sizeof(probe), "%s/initdb", dir);
        if (dir[0] != '\0' && executable(probe)) {
            return dir;
        }
    }
    snprintf(dir, sizeof(dir), "%s", PG_FALLBACK_BIN);
    return dir;
}

static void pg_set_port(struct sp_pg *pg, int port)
{
    pg->port = port;
    free(pg->conninfo);
    free(pg->conninfo_unix);
    pg->conninfo = sp_test_asprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", port);
    pg->conninfo_unix =
        sp_test_asprintf("host=%s port=%d user=postgres dbname=postgres", pg->dir, port);
}

static void pg_free(struct sp_pg *pg)
{
    free(pg->dir);
    free(pg->datadir);
    free(pg->log);
    free(pg->ctl_log);
    free(pg->conninfo);
    free(pg->conninfo_unix);
    free(pg);
}

/* Runs a bin-dir program as the cluster's owner; output to ctl.log. */
static int pg_run(struct sp_pg *pg, const char *const *argv, char *err, size_t errlen)
{
    struct spawn sp = {
        .argv = argv,
        .cwd = pg->dir,
        .switch_user = pg->as_pg_user,
        .uid = pg->uid,
        .gid = pg->gid,
    };
    int rc = run_cmd(&sp, pg->ctl_log, CMD_TIMEOUT_MS, err, errlen);
    if (rc > 0) {
        snprintf(err, errlen, "%s exited with status %d (output in %s)", argv[0], rc, pg->ctl_log);
    }
    return rc;
}

/* Creates the temp dir and decides who runs the server. */
static struct sp_pg *pg_new(const char *tag, char *err, size_t errlen)
{
    struct sp_pg *pg = h_xcalloc(1, sizeof(*pg));
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL) {
            snprintf(err, errlen,
                     "running as root but there is no \"postgres\" user to run "
                     "initdb and the server as");
            free(pg);
            return NULL;
        }
        pg->as_pg_user = true;
        pg->uid = pw->pw_uid;
        pg->gid = pw->pw_gid;
    }
    pg->dir = make_tmpdir(tag, err, errlen);
    if (pg->dir == NULL) {
        free(pg);
        return NULL;
    }
    if (pg->as_pg_user && chown(pg->dir, pg->uid, pg->gid) != 0) {
        snprintf(err, errlen, "could not chown \"%s\" to postgres: %s", pg->dir, strerror(errno));
        sp_test_rm_rf(pg->dir);
        pg_free(pg);
        return NULL;
    }
    pg->datadir = sp_test_asprintf("%s/data", pg->dir);
    pg->log = sp_test_asprintf("%s/server.log", pg->dir);
    pg->ctl_log = sp_test_asprintf("%s/ctl.log", pg->dir);
    return pg;
}

static int pg_initdb(struct sp_pg *pg, char *err, size_t errlen)
{
    char *initdb = sp_test_asprintf("%s/initdb", pg_bindir());
    locale_t loc = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
    const char *locale = loc != (locale_t)0 ? "--locale=C.UTF-8" : "--locale=C";
    if (loc != (locale_t)0) {
        freelocale(loc);
    }
    const char *argv[] = {initdb,     "-D",        pg->datadir, "-A",   "trust", "-U",
                          "postgres", "--no-sync", "-E",        "UTF8", locale,  NULL};
    int rc = pg_run(pg, argv, err, errlen);
    free(initdb);
    return rc;
}

/*
 * Settings go to postgresql.conf rather than -c options so the caller's
 * lines come after ours and win, and need no shell quoting (pg_ctl passes
 * -o through /bin/sh). Only the port is on the command line.
 */
static int pg_write_conf(struct sp_pg *pg, const struct sp_pg_opts *opts, char *err, size_t errlen)
{
    char *path = sp_test_asprintf("%s/postgresql.conf", pg->datadir);
    FILE *f = fopen(path, "a");
    if (f == NULL) {
        snprintf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
        free(path);
        return -1;
    }
    fprintf(f,
            "\n# tests/lib/harness.c\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = '%s'\n"
            "wal_level = logical\n"
            "max_replication_slots = 20\n"
            "max_wal_senders = 20\n"
            "fsync = off\n"
            "log_line_prefix = '%%m [%%p] %%q%%a '\n",
            pg->dir);
    if (opts != NULL && opts->extra_conf != NULL) {
        fprintf(f, "# extra_conf\n");
        for (const char *const *line = opts->extra_conf; *line != NULL; line++) {
            fprintf(f, "%s\n", *line);
        }
    }
    int rc = 0;
    if (fclose(f) != 0) {
        snprintf(err, errlen, "could not write \"%s\": %s", path, strerror(errno));
        rc = -1;
    }
    free(path);
    return rc;
}

static int pg_ctl_start(struct sp_pg *pg, char *err, size_t errlen)
{
    char *pg_ctl = sp_test_asprintf("%s/pg_ctl", pg_bindir());
    char *port_opt = sp_test_asprintf("-p %d", pg->port);
    const char *argv[] = {pg_ctl, "-D", pg->datadir, "-l",     pg->log, "-w",
                          "-t",   "60", "-o",        port_opt, "start", NULL};
    int rc = pg_run(pg, argv, err, errlen);
    free(port_opt);
    free(pg_ctl);
    return rc;
}

/* pg_ctl stop; if that fails, signals the postmaster directly. 0 once it is down. */
static int pg_ctl_stop(struct sp_pg *pg, const char *mode, char *err, size_t errlen)
{
    if (as_postmaster_pid(pg->datadir) < 0) {
        return 0; /* not running */
    }
    char *pg_ctl = sp_test_asprintf("%s/pg_ctl", pg_bindir());
    const char *argv[] = {pg_ctl, "-D", pg->datadir, "-m", mode, "-w", "-t", "60", "stop", NULL};
    int rc = pg_run(pg, argv, err, errlen);
    free(pg_ctl);
    if (rc == 0) {
        return 0;
    }
    pid_t pid = as_postmaster_pid(pg->datadir);
    if (pid > 0 && !as_kill_postmaster(pid)) {
        return -1;
    }
    return 0;
}

static void pg_link(struct sp_pg *pg)
{
    pg->next = hs.pgs;
    hs.pgs = pg;
}

static void pg_unlink(struct sp_pg *pg)
{
    for (struct sp_pg **pp = &hs.pgs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == pg) {
            *pp = pg->next;
            return;
        }
    }
}

/* Prints the logs, keeps the dir and fails the test; pg is freed. */
static void pg_fail(struct sp_pg *pg, const char *what, const char *err)
{
    hs.failed = true;
    print_file("initdb/pg_ctl output", pg->ctl_log);
    print_file("postgres server log", pg->log);
    char msg[2048];
    snprintf(msg, sizeof(msg), "%s (port %d, dir %s): %s", what, pg->port, pg->dir, err);
    char e2[512];
    if (pg_ctl_stop(pg, "immediate", e2, sizeof(e2)) == 0) {
        reaper_send('D', pg->datadir);
    }
    pg_unlink(pg);
    retire(pg->dir, NULL);
    pg_free(pg);
    h_fail("%s", msg);
}

struct sp_pg *sp_test_pg_start(const struct sp_pg_opts *opts)
{
    char err[1024];
    ensure_atexit();
    struct sp_pg *pg =
        pg_new(opts != NULL && opts->tag != NULL ? opts->tag : "pg", err, sizeof(err));
    if (pg == NULL) {
        h_fail("could not set up PostgreSQL: %s", err);
        return NULL;
    }
    pg_link(pg);
    if (pg_initdb(pg, err, sizeof(err)) != 0) {
        pg_fail(pg, "initdb failed", err);
        return NULL;
    }
    if (pg_write_conf(pg, opts, err, sizeof(err)) != 0) {
        pg_fail(pg, "could not configure PostgreSQL", err);
        return NULL;
    }
    reaper_send('A', pg->datadir);
    for (int attempt = 0; attempt < 2; attempt++) {
        pg_set_port(pg, sp_test_free_port());
        if (pg_ctl_start(pg, err, sizeof(err)) == 0) {
            pg->running = true;
            return pg;
        }
        /* -w may give up on a server that is still starting: make sure it is gone. */
        char e2[512];
        pg_ctl_stop(pg, "immediate", e2, sizeof(e2));
        if (attempt == 0) {
            fprintf(stderr,
                    "harness: PostgreSQL did not start on port %d (%s); retrying on "
                    "another port\n",
                    pg->port, err);
        }
    }
    pg_fail(pg, "could not start PostgreSQL", err);
    return NULL;
}

void sp_test_pg_stop(struct sp_pg *pg)
{
    if (pg == NULL) {
        return;
    }
    char err[1024];
    if (pg_ctl_stop(pg, "fast", err, sizeof(err)) != 0) {
        /* Keep going: the teardown must release everything else too. */
        hs.failed = true;
        fprintf(stderr, "harness: could not stop PostgreSQL in %s: %s\n", pg->dir, err);
    } else {
        reaper_send('D', pg->datadir);
    }
    pg_unlink(pg);
    retire(pg->dir, pg->log);
    pg_free(pg);
}

void sp_test_pg_down(struct sp_pg *pg, const char *mode)
{
    char err[1024];
    if (strcmp(mode, "smart") != 0 && strcmp(mode, "fast") != 0 && strcmp(mode, "immediate") != 0) {
        h_fail("sp_test_pg_down: unknown mode \"%s\"", mode);
        return;
    }
    if (pg_ctl_stop(pg, mode, err, sizeof(err)) != 0) {
        print_file("initdb/pg_ctl output", pg->ctl_log);
        print_file("postgres server log", pg->log);
        h_fail("could not stop PostgreSQL in %s: %s", pg->dir, err);
        return;
    }
    pg->running = false;
}

void sp_test_pg_up(struct sp_pg *pg)
{
    char err[1024];
    if (pg_ctl_start(pg, err, sizeof(err)) != 0) {
        print_file("initdb/pg_ctl output", pg->ctl_log);
        print_file("postgres server log", pg->log);
        h_fail("could not start PostgreSQL again on port %d: %s", pg->port, err);
        return;
    }
    pg->running = true;
}

void sp_test_pg_restart(struct sp_pg *pg)
{
    sp_test_pg_down(pg, "fast");
    sp_test_pg_up(pg);
}

const char *sp_test_pg_conninfo(const struct sp_pg *pg)
{
    return pg->conninfo;
}

const char *sp_test_pg_conninfo_unix(const struct sp_pg *pg)
{
    return pg->conninfo_unix;
}

int sp_test_pg_port(const struct sp_pg *pg)
{
    return pg->port;
}

const char *sp_test_pg_dir(const struct sp_pg *pg)
{
    return pg->dir;
}

const char *sp_test_pg_datadir(const struct sp_pg *pg)
{
    return pg->datadir;
}

const char *sp_test_pg_log_path(const struct sp_pg *pg)
{
    return pg->log;
}

int sp_test_pg_pid(const struct sp_pg *pg)
{
    pid_t pid = as_postmaster_pid(pg->datadir);
    return pid > 0 && as_pid_alive(pid) ? (int)pid : -1;
}

void sp_test_pg_print_log(const struct sp_pg *pg)
{
    print_file("postgres server log", pg->log);
}

static void pg_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

PGconn *sp_test_pg_connect_db(const struct sp_pg *pg, const char *dbname)
{
    const char *keys[] = {"dbname", "dbname", "connect_timeout", NULL};
    const char *vals[] = {pg->conninfo, dbname, "10", NULL};
    if (dbname == NULL) {
        keys[1] = "connect_timeout";
        vals[1] = "10";
        keys[2] = NULL;
    }
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        h_fail("could not connect to \"%s\"%s%s: %s", pg->conninfo, dbname ? " dbname=" : "",
               dbname ? dbname : "", msg);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_ignore_notice, NULL);
    return c;
}

PGconn *sp_test_pg_connect(const struct sp_pg *pg)
{
    return sp_test_pg_connect_db(pg, NULL);
}

/* Runs sql; NULL (after filling msg) unless the result is a success. */
static PGresult *sql_run(PGconn *c, const char *sql, char *msg, size_t msglen)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(res);
    if (res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        return res;
    }
    const char *why = res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(c);
    if (why == NULL || why[0] == '\0') {
        why = PQresStatus(st);
    }
    snprintf(msg, msglen, "SQL failed: %s\n  %s", sql, why);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') {
        msg[--n] = '\0';
    }
    PQclear(res);
    return NULL;
}

void sp_test_sql(PGconn *c, const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    char *sql = h_vasprintf(fmt, ap);
    va_end(ap);
    PGresult *res = sql_run(c, sql, msg, sizeof(msg));
    free(sql);
    if (res == NULL) {
        h_fail("%s", msg);
        return;
    }
    PQclear(res);
}

/* First value of sql's result into *value (malloc'd or NULL); msg filled and -1 on error. */
static int sql_first(PGconn *c, const char *sql, char **value, char *msg, size_t msglen)
{
    *value = NULL;
    PGresult *res = sql_run(c, sql, msg, msglen);
    if (res == NULL) {
        return -1;
    }
    if (PQntuples(res) < 1 || PQnfields(res) < 1) {
        snprintf(msg, msglen, "SQL returned no rows: %s", sql);
        PQclear(res);
        return -1;
    }
    if (!PQgetisnull(res, 0, 0)) {
        *value = h_xstrdup(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return 0;
}

static char *sql_value_v(PGconn *c, const char *fmt, va_list ap, char **sql_out)
{
    char msg[8192];
    char *sql = h_vasprintf(fmt, ap);
    char *value = NULL;
    if (sql_first(c, sql, &value, msg, sizeof(msg)) != 0) {
        free(sql);
        h_fail("%s", msg);
        return NULL;
    }
    if (sql_out != NULL) {
        *sql_out = sql;
    } else {
        free(sql);
    }
    return value;
}

char *sp_test_sql_value(PGconn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *value = sql_value_v(c, fmt, ap, NULL);
    va_end(ap);
    return value;
}

long sp_test_sql_long(PGconn *c, const char *fmt, ...)
{
    char *sql = NULL;
    va_list ap;
    va_start(ap, fmt);
    char *value = sql_value_v(c, fmt, ap, &sql);
    va_end(ap);
    char msg[8192];
    char *end = NULL;
    errno = 0;
    long v = value != NULL ? strtol(value, &end, 10) : 0;
    if (value == NULL || end == value || *end != '\0' || errno != 0) {
        snprintf(msg, sizeof(msg), "SQL returned %s%s%s, not an integer: %s", value ? "\"" : "",
                 value ? value : "NULL", value ? "\"" : "", sql);
        free(value);
        free(sql);
        h_fail("%s", msg);
        return 0;
    }
    free(value);
    free(sql);
    return v;
}

bool sp_test_sql_poll_until(PGconn *c, const char *expected, int timeout_ms, const char *fmt, ...)
{
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    char *sql = h_vasprintf(fmt, ap);
    va_end(ap);
    int64_t deadline = now_ms() + timeout_ms;
    bool match = false;
    for (;;) {
        char *value = NULL;
        if (sql_first(c, sql, &value, msg, sizeof(msg)) != 0) {
            free(sql);
            h_fail("%s", msg);
            return false;
        }
        match = expected == NULL ? value == NULL : value != NULL && strcmp(value, expected) == 0;
        free(value);
        if (match || now_ms() >= deadline) {
            break;
        }
        sleep_ms(20);
    }
    free(sql);
    return match;
}

/* ---- redis-server, nats-server ------------------------------------------- */

struct srv {
    const char *kind; /* "redis" or "nats" */
    char *dir;
    char *log; /* the server's stdout and stderr */
    char *url;
    char *name; /* nats server_name */
    int port;
    struct sp_proc *proc;
    struct srv *next; /* hs.srvs */
};

struct sp_redis {
    struct srv s;
};

struct sp_nats {
    struct srv s;
};

/* 1 ready (it is ours), 0 not yet, -1 some other server answered on the port. */
typedef int (*srv_ready_fn)(struct srv *s);

/* Finds name in PATH and the usual sbin/bin dirs; the result is cached per name by callers. */
static bool find_binary(const char *name, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    char *dirs = sp_test_asprintf("%s:/usr/sbin:/usr/bin:/usr/local/bin:/usr/local/sbin",
                                  path != NULL ? path : "");
    bool found = false;
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, outlen, "%s/%s", d, name);
        if (d[0] != '\0' && executable(out)) {
            found = true;
            break;
        }
    }
    free(dirs);
    return found;
}

bool sp_test_redis_available(void)
{
    char path[PATH_MAX];
    return find_binary("redis-server", path, sizeof(path));
}

bool sp_test_nats_available(void)
{
    char path[PATH_MAX];
    return find_binary("nats-server", path, sizeof(path));
}

/* Reads from fd into buf until needle (and the line it starts) arrives; false on EOF/timeout. */
static bool read_until(int fd, char *buf, size_t cap, const char *needle, const char **at)
{
    size_t n = 0;
    *at = NULL;
    while (n + 1 < cap) {
        ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return false;
        }
        n += (size_t)got;
        buf[n] = '\0';
        const char *hit = strstr(buf, needle);
        if (hit != NULL && strstr(hit, "\r\n") != NULL) {
            *at = hit;
            return true;
        }
    }
    return false;
}

/* A connection for a readiness probe: short timeouts, so a silent listener fails fast. */
static int probe_connect(int port)
{
    int fd = sp_test_tcp_connect(port);
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

static int redis_ready(struct srv *s)
{
    int fd = probe_connect(s->port);
    if (fd < 0) {
        return 0;
    }
    char buf[16384];
    const char *at = NULL;
    int rc = 0;
    static const char cmd[] = "INFO server\r\n";
    if (send(fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(cmd) - 1) &&
        read_until(fd, buf, sizeof(buf), "process_id:", &at)) {
        long pid = strtol(at + strlen("process_id:"), NULL, 10);
        rc = pid == sp_test_proc_pid(s->proc) ? 1 : -1;
    }
    close(fd);
    return rc;
}

static int nats_ready(struct srv *s)
{
    int fd = probe_connect(s->port);
    if (fd < 0) {
        return 0;
    }
    char buf[8192];
    const char *at = NULL;
    int rc = 0;
    if (read_until(fd, buf, sizeof(buf), "INFO ", &at)) {
        char *want = sp_test_asprintf("\"server_name\":\"%s\"", s->name);
        if (strstr(at, want) == NULL) {
            rc = -1;
        } else if (strstr(at, "\"jetstream\":true") != NULL) {
            rc = 1;
        }
        free(want);
    }
    close(fd);
    return rc;
}

/* Waits until ready says 1; false if the server died, another one answered, or time ran out. */
static bool srv_wait_ready(struct srv *s, srv_ready_fn ready, char *err, size_t errlen)
{
    int64_t deadline = now_ms() + SRV_READY_MS;
    for (;;) {
        int r = ready(s);
        if (r > 0) {
            return true;
        }
        if (r < 0) {
            snprintf(err, errlen, "another server answered on port %d", s->port);
            return false;
        }
        if (!sp_test_proc_alive(s->proc)) {
            snprintf(err, errlen, "%s-server exited with status %d", s->kind,
                     sp_test_proc_wait(s->proc, 0));
            return false;
        }
        if (now_ms() >= deadline) {
            snprintf(err, errlen, "%s-server did not accept connections on port %d within %d ms",
                     s->kind, s->port, SRV_READY_MS);
            return false;
        }
        sleep_ms(20);
    }
}

/* Builds argv for one attempt on s->port; bufs hold its formatted strings. */
static void srv_argv(struct srv *s, const char *bin, const char **argv, char *port, size_t plen,
                     char *jsdir, size_t jlen)
{
    snprintf(port, plen, "%d", s->port);
    size_t i = 0;
    argv[i++] = bin;
    if (strcmp(s->kind, "redis") == 0) {
        const char *rest[] = {"--port",       port, "--bind", "127.0.0.1", "--save",      "",
                              "--appendonly", "no", "--dir",  s->dir,      "--daemonize", "no",
                              "--logfile",    "",   NULL};
        for (const char *const *a = rest; *a != NULL; a++) {
            argv[i++] = *a;
        }
    } else {
        snprintf(jsdir, jlen, "%s/js", s->dir);
        const char *rest[] = {"-a",  "127.0.0.1", "-p", port,    "-js",
                              "-sd", jsdir,       "-n", s->name, NULL};
        for (const char *const *a = rest; *a != NULL; a++) {
            argv[i++] = *a;
        }
    }
    argv[i] = NULL;
}

static void srv_free(struct srv *s)
{
    for (struct srv **pp = &hs.srvs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    free(s->dir);
    free(s->log);
    free(s->url);
    free(s->name);
    free(s);
}

/* Starts the server in s (kind set); retries once on another port. False with err filled. */
static bool srv_start(struct srv *s, srv_ready_fn ready, char *err, size_t errlen)
{
    static unsigned serial;
    char bin[PATH_MAX];
    char *bin_name = sp_test_asprintf("%s-server", s->kind);
    bool found = find_binary(bin_name, bin, sizeof(bin));
    free(bin_name);
    if (!found) {
        snprintf(err, errlen, "%s-server is not installed", s->kind);
        return false;
    }
    s->dir = make_tmpdir(s->kind, err, errlen);
    if (s->dir == NULL) {
        return false;
    }
    s->log = sp_test_asprintf("%s/%s.log", s->dir, s->kind);
    s->name = sp_test_asprintf("sp-test-%d-%u", (int)getpid(), ++serial);
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *argv[24];
        char port[16];
        char jsdir[PATH_MAX];
        s->port = sp_test_free_port();
        srv_argv(s, bin, argv, port, sizeof(port), jsdir, sizeof(jsdir));
        s->proc = proc_start(argv, s->log, s->log, err, errlen);
        if (s->proc == NULL) {
            return false;
        }
        if (srv_wait_ready(s, ready, err, errlen)) {
            s->url = sp_test_asprintf("%s://127.0.0.1:%d", s->kind, s->port);
            return true;
        }
        sp_test_proc_free(s->proc);
        s->proc = NULL;
        print_file(s->kind, s->log);
        if (attempt == 0) {
            fprintf(stderr, "harness: %s; retrying on another port\n", err);
        }
    }
    return false;
}

static struct srv *srv_launch(struct srv *s, const char *kind, srv_ready_fn ready)
{
    char err[1024];
    ensure_atexit();
    s->kind = kind;
    s->next = hs.srvs;
    hs.srvs = s;
    if (!srv_start(s, ready, err, sizeof(err))) {
        hs.failed = true;
        if (s->dir != NULL) {
            retire(s->dir, NULL);
        }
        srv_free(s);
        h_fail("could not start %s-server: %s", kind, err);
        return NULL;
    }
    return s;
}

static void srv_stop(struct srv *s)
{
    if (s->proc != NULL) {
        sp_test_proc_signal(s->proc, SIGTERM);
        if (sp_test_proc_wait(s->proc, SRV_STOP_MS) == SP_TEST_PROC_TIMEOUT) {
            fprintf(stderr, "harness: %s-server ignored SIGTERM for %d ms; killing it\n", s->kind,
                    SRV_STOP_MS);
        }
        sp_test_proc_free(s->proc);
        s->proc = NULL;
    }
    retire(s->dir, s->log);
    srv_free(s);
}

struct sp_redis *sp_test_redis_start(void)
{
    struct sp_redis *r = h_xcalloc(1, sizeof(*r));
    return srv_launch(&r->s, "redis", redis_ready) != NULL ? r : NULL;
}

void sp_test_redis_stop(struct sp_redis *r)
{
    if (r != NULL) {
        srv_stop(&r->s);
    }
}

int sp_test_redis_port(const struct sp_redis *r)
{
    return r->s.port;
}

int sp_test_redis_pid(const struct sp_redis *r)
{
    return sp_test_proc_pid(r->s.proc);
}

const char *sp_test_redis_url(const struct sp_redis *r)
{
    return r->s.url;
}

void sp_test_redis_print_log(const struct sp_redis *r)
{
    print_file("redis-server log", r->s.log);
}

struct sp_nats *sp_test_nats_start(void)
{
    struct sp_nats *n = h_xcalloc(1, sizeof(*n));
    return srv_launch(&n->s, "nats", nats_ready) != NULL ? n : NULL;
}

void sp_test_nats_stop(struct sp_nats *n)
{
    if (n != NULL) {
        srv_stop(&n->s);
    }
}

int sp_test_nats_port(const struct sp_nats *n)
{
    return n->s.port;
}

int sp_test_nats_pid(const struct sp_nats *n)
{
    return sp_test_proc_pid(n->s.proc);
}

const char *sp_test_nats_url(const struct sp_nats *n)
{
    return n->s.url;
}

void sp_test_nats_print_log(const struct sp_nats *n)
{
    print_file("nats-server log", n->s.log);
}

/* ---- group run and the safety net ---------------------------------------- */

void sp_test_begin(void)
{
    ensure_atexit();
    hs.in_group = true;
}

/* Stops whatever the tests left running; each is a test bug worth a line. */
static void stop_leftovers(void)
{
    while (hs.srvs != NULL) {
        fprintf(stderr, "harness: %s-server on port %d was not stopped by the test\n",
                hs.srvs->kind, hs.srvs->port);
        srv_stop(hs.srvs);
    }
    while (hs.procs != NULL) {
        fprintf(stderr, "harness: process \"%s\" (pid %d) was not freed by the test\n",
                hs.procs->name, (int)hs.procs->pid);
        sp_test_proc_free(hs.procs);
    }
    while (hs.pgs != NULL) {
        fprintf(stderr, "harness: PostgreSQL in %s was not stopped by the test\n", hs.pgs->dir);
        sp_test_pg_stop(hs.pgs);
    }
    while (hs.tmpdirs != NULL) {
        struct live_dir *ld = hs.tmpdirs;
        hs.tmpdirs = ld->next;
        retire(ld->dir, NULL);
        free(ld->dir);
        free(ld);
    }
}

static void settle_retired(bool failed)
{
    bool keep = failed || keep_tmp();
    while (hs.retired != NULL) {
        struct retired *r = hs.retired;
        hs.retired = r->next;
        if (keep) {
            keep_dir(r->dir, r->log, failed);
        } else {
            sp_test_rm_rf(r->dir);
        }
        free(r->dir);
        free(r->log);
        free(r);
    }
}

int sp_test_finish(int failed)
{
    stop_leftovers();
    bool bad = failed != 0 || hs.failed;
    settle_retired(bad);
    hs.in_group = false;
    reaper_stop();
    if (failed == 0 && hs.failed) {
        return 1;
    }
    return failed;
}

static void harness_atexit(void)
{
    if (hs.in_group) {
        /* exit() from inside a test: the run did not complete. */
        hs.failed = true;
    }
    stop_leftovers();
    settle_retired(hs.failed);
    hs.in_group = false;
    reaper_stop();
}

/* ---- JSON ---------------------------------------------------------------- */

#define JSON_MAX_DEPTH 512
#define JSON_MAX_SEGS  64

struct jseg {
    const char *key; /* not NUL-terminated */
    size_t len;
    bool bracket; /* written as [N]: matches array elements only */
    bool numeric;
    size_t index;
};

struct jhit {
    bool found;
    const char *start;
    const char *end;
};

struct jp {
    const char *p;
    int depth;
};

/* Splits "a.b[2].c" or "a.b.2.c" into segments; -1 if malformed. */
static int json_path(const char *path, struct jseg *segs, int max)
{
    int n = 0;
    const char *p = path;
    if (*p == '\0') {
        return 0;
    }
    while (n < max) {
        struct jseg *sg = &segs[n++];
        memset(sg, 0, sizeof(*sg));
        if (*p == '[') {
            sg->bracket = true;
            p++;
        }
        sg->key = p;
        while (*p != '\0' && *p != '.' && *p != '[' && *p != ']') {
            p++;
        }
        sg->len = (size_t)(p - sg->key);
        sg->numeric = sg->len > 0 && sg->len < 19;
        for (size_t i = 0; i < sg->len && sg->numeric; i++) {
            sg->numeric = isdigit((unsigned char)sg->key[i]);
            sg->index = sg->index * 10 + (size_t)(sg->key[i] - '0');
        }
        if (sg->bracket && (*p++ != ']' || !sg->numeric)) {
            return -1;
        }
        if (*p == '\0') {
            return n;
        }
        if (*p == '.') {
            p++;
        } else if (*p != '[') {
            return -1;
        }
    }
    return -1;
}

static void jp_ws(struct jp *j)
{
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r') {
        j->p++;
    }
}

/* Length of the valid UTF-8 sequence at s (not ASCII), or 0. */
static int utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    int len;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (int i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            d = (unsigned)(c - 'A' + 10);
        } else {
            return -1;
        }
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* Reads a \u escape (s at the 'u') and its low surrogate if any; returns bytes used or -1. */
static int json_u_escape(const char *s, unsigned *cp)
{
    unsigned hi;
    if (hex4(s + 1, &hi) != 0) {
        return -1;
    }
    if (hi >= 0xDC00 && hi <= 0xDFFF) {
        return -1;
    }
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        return 5;
    }
    unsigned lo;
    if (s[5] != '\\' || s[6] != 'u' || hex4(s + 7, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
        return -1;
    }
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return 11;
}

/* Validates a string (j->p at its opening quote) and moves past it. */
static int jp_string(struct jp *j)
{
    const char *p = j->p + 1;
    for (;;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            j->p = p + 1;
            return 0;
        }
        if (c < 0x20) {
            return -1; /* includes the terminating NUL */
        }
        if (c == '\\') {
            unsigned cp;
            int used = p[1] == 'u' ? json_u_escape(p + 1, &cp) : 1;
            if (used < 0 || (p[1] != 'u' && strchr("\"\\/bfnrt", p[1]) == NULL) || p[1] == '\0') {
                return -1;
            }
            p += 1 + used;
        } else if (c >= 0x80) {
            int len = utf8_seq((const unsigned char *)p);
            if (len == 0) {
                return -1;
            }
            p += len;
        } else {
            p++;
        }
    }
}

static int jp_digits(struct jp *j)
{
    if (!isdigit((unsigned char)*j->p)) {
        return -1;
    }
    while (isdigit((unsigned char)*j->p)) {
        j->p++;
    }
    return 0;
}

static int jp_number(struct jp *j)
{
    if (*j->p == '-') {
        j->p++;
    }
    if (*j->p == '0') {
        j->p++;
    } else if (jp_digits(j) != 0) {
        return -1;
    }
    if (*j->p == '.') {
        j->p++;
        if (jp_digits(j) != 0) {
            return -1;
        }
    }
    if (*j->p == 'e' || *j->p == 'E') {
        j->p++;
        if (*j->p == '+' || *j->p == '-') {
            j->p++;
        }
        if (jp_digits(j) != 0) {
            return -1;
        }
    }
    return 0;
}

static int jp_literal(struct jp *j, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(j->p, word, n) != 0) {
        return -1;
    }
    j->p += n;
    return 0;
}

static void utf8_put(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) {
        *u++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *u++ = (unsigned char)(0xC0 | (cp >> 6));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *u++ = (unsigned char)(0xE0 | (cp >> 12));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *u++ = (unsigned char)(0xF0 | (cp >> 18));
        *u++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *u++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = (char *)u;
}

/* Unescapes a validated string [start, end) including its quotes; sets *len. */
static char *json_unescape(const char *start, const char *end, size_t *len)
{
    char *out = h_xmalloc((size_t)(end - start));
    char *o = out;
    for (const char *p = start + 1; p < end - 1;) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        char e = p[1];
        static const char from[] = "\"\\/bfnrt";
        static const char to[] = "\"\\/\b\f\n\r\t";
        if (e == 'u') {
            unsigned cp = 0;
            p += 1 + json_u_escape(p + 1, &cp);
            utf8_put(&o, cp);
        } else {
            *o++ = to[strchr(from, e) - from];
            p += 2;
        }
    }
    *o = '\0';
    *len = (size_t)(o - out);
    return out;
}

static bool json_key_matches(const char *start, const char *end, const struct jseg *sg)
{
    if (sg->bracket) {
        return false;
    }
    size_t len;
    char *key = json_unescape(start, end, &len);
    bool eq = len == sg->len && memcmp(key, sg->key, len) == 0;
    free(key);
    return eq;
}

static int jp_value(struct jp *j, const struct jseg *sg, int nseg, struct jhit *hit);

/* sg: the segment to match in this container, or NULL when off the path. */
static int jp_object(struct jp *j, const struct jseg *sg, int nseg, struct jhit *hit)
{
    j->p++;
    jp_ws(j);
    if (*j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        jp_ws(j);
        const char *kstart = j->p;
        if (*j->p != '"' || jp_string(j) != 0) {
            return -1;
        }
        bool match = sg != NULL && json_key_matches(kstart, j->p, sg);
        jp_ws(j);
        if (*j->p++ != ':') {
            return -1;
        }
        if (jp_value(j, match ? sg + 1 : NULL, match ? nseg - 1 : 0, hit) != 0) {
            return -1;
        }
        jp_ws(j);
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',') {
            return -1;
        }
    }
}

static int jp_array(struct jp *j, const struct jseg *sg, int nseg, struct jhit *hit)
{
    j->p++;
    jp_ws(j);
    if (*j->p == ']') {
        j->p++;
        return 0;
    }
    for (size_t idx = 0;; idx++) {
        bool match = sg != NULL && sg->numeric && sg->index == idx;
        if (jp_value(j, match ? sg + 1 : NULL, match ? nseg - 1 : 0, hit) != 0) {
            return -1;
        }
        jp_ws(j);
        if (*j->p == ']') {
            j->p++;
            return 0;
        }
        if (*j->p++ != ',') {
            return -1;
        }
    }
}

/*
 * Validates one value at j->p. sg/nseg: the rest of the path when this value
 * is on it (nseg 0: this is the target), sg NULL when it is not.
 */
static int jp_value(struct jp *j, const struct jseg *sg, int nseg, struct jhit *hit)
{
    jp_ws(j);
    bool target = sg != NULL && nseg == 0 && !hit->found;
    const struct jseg *next = sg != NULL && nseg > 0 ? sg : NULL;
    const char *start = j->p;
    int rc;
    if (++j->depth > JSON_MAX_DEPTH) {
        return -1;
    }
    switch (*j->p) {
    case '{':
        rc = jp_object(j, next, nseg, hit);
        break;
    case '[':
        rc = jp_array(j, next, nseg, hit);
        break;
    case '"':
        rc = jp_string(j);
        break;
    case 't':
        rc = jp_literal(j, "true");
        break;
    case 'f':
        rc = jp_literal(j, "false");
        break;
    case 'n':
        rc = jp_literal(j, "null");
        break;
    default:
        rc = (*j->p == '-' || isdigit((unsigned char)*j->p)) ? jp_number(j) : -1;
        break;
    }
    j->depth--;
    if (rc == 0 && target) {
        hit->found = true;
        hit->start = start;
        hit->end = j->p;
    }
    return rc;
}

/* Copies [start, end) without whitespace outside strings. */
static char *json_compact(const char *start, const char *end)
{
    char *out = h_xmalloc((size_t)(end - start) + 1);
    char *o = out;
    bool in_str = false;
    for (const char *p = start; p < end; p++) {
        if (in_str) {
            *o++ = *p;
            if (*p == '\\') {
                *o++ = *++p;
            } else if (*p == '"') {
                in_str = false;
            }
        } else if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            in_str = *p == '"';
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

enum sp_test_json sp_test_json_lookup(const char *json, const char *path, char **out)
{
    struct jseg segs[JSON_MAX_SEGS];
    if (out != NULL) {
        *out = NULL;
    }
    int nseg = json_path(path, segs, JSON_MAX_SEGS);
    if (nseg < 0) {
        fprintf(stderr, "harness: malformed JSON path \"%s\"\n", path);
        return SP_TEST_JSON_MISSING;
    }
    struct jp j = {.p = json, .depth = 0};
    struct jhit hit = {false, NULL, NULL};
    if (jp_value(&j, segs, nseg, &hit) != 0) {
        return SP_TEST_JSON_INVALID;
    }
    jp_ws(&j);
    if (*j.p != '\0') {
        return SP_TEST_JSON_INVALID;
    }
    if (!hit.found) {
        return SP_TEST_JSON_MISSING;
    }
    enum sp_test_json kind;
    size_t len;
    switch (*hit.start) {
    case 'n':
        return SP_TEST_JSON_NULL;
    case '"':
        kind = SP_TEST_JSON_STRING;
        if (out != NULL) {
            *out = json_unescape(hit.start, hit.end, &len);
        }
        return kind;
    case '{':
    case '[':
        kind = *hit.start == '{' ? SP_TEST_JSON_OBJECT : SP_TEST_JSON_ARRAY;
        if (out != NULL) {
            *out = json_compact(hit.start, hit.end);
        }
        return kind;
    case 't':
        kind = SP_TEST_JSON_TRUE;
        break;
    case 'f':
        kind = SP_TEST_JSON_FALSE;
        break;
    default:
        kind = SP_TEST_JSON_NUMBER;
        break;
    }
    if (out != NULL) {
        *out = h_xstrndup(hit.start, (size_t)(hit.end - hit.start));
    }
    return kind;
}

char *sp_test_json_get(const char *json, const char *path)
{
    char *out = NULL;
    enum sp_test_json kind = sp_test_json_lookup(json, path, &out);
    if (kind == SP_TEST_JSON_INVALID) {
        h_fail("not valid JSON (looking for \"%s\"): %.2000s", path, json);
        return NULL;
    }
    if (kind == SP_TEST_JSON_MISSING) {
        h_fail("no value at \"%s\" in %.2000s", path, json);
        return NULL;
    }
    return out;
}

// SPDX-License-Identifier: Apache-2.0
/*
 * `siphon demo`: a private PostgreSQL cluster in a temporary directory
 * (initdb from the installed PostgreSQL; run as the `postgres` user when
 * started as root, since PostgreSQL refuses to run as root), a small shop
 * schema, a generator of inserts, updates and deletes on its own thread,
 * and siphon streaming every change to the terminal. Ctrl-C stops it
 * cleanly and removes the cluster.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "telemetry/log.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/time.h"

struct demo {
    char dir[64];
    char bindir[256];
    int port;
    uid_t uid; /* who runs PostgreSQL */
    gid_t gid;
    bool as_other_user;
    bool started;
    volatile sig_atomic_t *stop;
    int rate;
    int64_t deadline_ms;
};

static int demo_find_bindir(struct demo *d)
{
    const char *env = getenv("SIPHON_PG_BINDIR");
    if (env != NULL) {
        snprintf(d->bindir, sizeof(d->bindir), "%s", env);
        return 0;
    }
    glob_t g;
    /* Prefer 15, the version siphon is tested with; else the newest installed. */
    if (access("/usr/lib/postgresql/15/bin/initdb", X_OK) == 0) {
        snprintf(d->bindir, sizeof(d->bindir), "/usr/lib/postgresql/15/bin");
        return 0;
    }
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        snprintf(d->bindir, sizeof(d->bindir), "%s", g.gl_pathv[g.gl_pathc - 1]);
        char *slash = strrchr(d->bindir, '/');
        *slash = '\0';
        globfree(&g);
        return 0;
    }
    return -1;
}

/* Run argv (as the PostgreSQL user), output to log; returns the exit status. */
static int demo_exec(const struct demo *d, char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (d->as_other_user && (setgid(d->gid) != 0 || setuid(d->uid) != 0)) {
            _exit(126);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int demo_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port > 0 ? port : 54329;
}

static void demo_print_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        fprintf(stderr, "  | %s", line);
    }
    fclose(f);
}

static int demo_start_pg(struct demo *d)
{
    if (demo_find_bindir(d) != 0) {
        sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR,
                         "install it with: apt-get install postgresql-15 (or set "
                         "SIPHON_PG_BINDIR to the directory holding initdb and pg_ctl)",
                         "could not find PostgreSQL's server programs");
        return -1;
    }
    snprintf(d->dir, sizeof(d->dir), "/tmp/siphon-demo-XXXXXX");
    if (mkdtemp(d->dir) == NULL) {
        sp_log_error(&sp_log_main, "could not create a temporary directory: %s", strerror(errno));
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL) {
            sp_log_emit_hint(&sp_log_main, SP_LOG_ERROR,
                             "install Debian's postgresql package (it creates the user), or run "
                             "the demo as a normal user",
                             "PostgreSQL refuses to run as root and there is no \"postgres\" "
                             "user to run it as");
            return -1;
        }
        d->uid = pw->pw_uid;
        d->gid = pw->pw_gid;
        d->as_other_user = true;
        if (chown(d->dir, d->uid, d->gid) != 0) {
            sp_log_error(&sp_log_main, "could not chown %s: %s", d->dir, strerror(errno));
            return -1;
        }
    }
    chmod(d->dir, 0755);
    char data[128];
    char log[128];
    char initdb[300];
    char pgctl[300];
    snprintf(data, sizeof(data), "%s/data", d->dir);
    snprintf(log, sizeof(log), "%s/setup.log", d->dir);
    snprintf(initdb, sizeof(initdb), "%s/initdb", d->bindir);
    snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", d->bindir);
    sp_log_info(&sp_log_main, "creating a private PostgreSQL cluster in %s", d->dir);
    char *init_argv[] = {initdb,
                         "-D",
                         data,
                         "-A",
                         "trust",
                         "-U",
                         "postgres",
                         "-E",
                         "UTF8",
                         "--no-sync",
                         "--no-instructions",
                         NULL};
    if (demo_exec(d, init_argv, log) != 0) {
        sp_log_error(&sp_log_main, "initdb failed:");
        demo_print_log(log);
        return -1;
    }
    d->port = demo_free_port();
    char opts[400];
    snprintf(opts, sizeof(opts),
             "-c wal_level=logical -c port=%d -c listen_addresses='' "
             "-c unix_socket_directories='%s' -c max_wal_senders=4 -c max_replication_slots=4 "
             "-c fsync=off -c log_min_messages=warning",
             d->port, d->dir);
    char pglog[128];
    snprintf(pglog, sizeof(pglog), "%s/postgres.log", d->dir);
    char *start_argv[] = {pgctl, "-D", data, "-l", pglog,   "-o",
                          opts,  "-w", "-t", "60", "start", NULL};
    if (demo_exec(d, start_argv, log) != 0) {
        sp_log_error(&sp_log_main, "PostgreSQL did not start:");
        demo_print_log(log);
        demo_print_log(pglog);
        return -1;
    }
    d->started = true;
    return 0;
}

static void demo_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        if (dir != NULL) {
            struct dirent *de;
            while ((de = readdir(dir)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                    continue;
                }
                char *child = sp_xasprintf("%s/%s", path, de->d_name);
                demo_rm_rf(child);
                free(child);
            }
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void demo_stop_pg(struct demo *d)
{
    if (d->started) {
        char data[128];
        char log[128];
        char pgctl[300];
        snprintf(data, sizeof(data), "%s/data", d->dir);
        snprintf(log, sizeof(log), "%s/setup.log", d->dir);
        snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", d->bindir);
        char *stop_argv[] = {pgctl, "-D", data, "-m", "fast", "-w", "stop", NULL};
        if (demo_exec(d, stop_argv, log) != 0) {
            sp_log_warn(&sp_log_main, "pg_ctl stop failed; see %s", log);
            return;
        }
        d->started = false;
    }
    if (d->dir[0] != '\0') {
        demo_rm_rf(d->dir);
        sp_log_info(&sp_log_main, "removed the private cluster in %s", d->dir);
    }
}

static char *demo_conninfo(const struct demo *d)
{
    return sp_xasprintf("host=%s port=%d user=postgres dbname=postgres", d->dir, d->port);
}

static const char *const demo_schema =
    "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text,"
    " profile jsonb, tags text[], created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers,"
    " status text NOT NULL DEFAULT 'new', total numeric(12,2) NOT NULL, items int[],"
    " note text, placed_on date DEFAULT current_date,"
    " created_at timestamptz NOT NULL DEFAULT now());";

static int demo_setup_schema(const struct demo *d)
{
    char *ci = demo_conninfo(d);
    PGconn *c = PQconnectdb(ci);
    free(ci);
    int rc = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        sp_log_error(&sp_log_main, "could not connect to the demo cluster: %s", PQerrorMessage(c));
        rc = -1;
    } else {
        PGresult *res = PQexec(c, demo_schema);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            sp_log_error(&sp_log_main, "could not create the demo schema: %s",
                         PQresultErrorMessage(res));
            rc = -1;
        }
        PQclear(res);
    }
    PQfinish(c);
    return rc;
}

static const char *const demo_names[] = {"Ada",      "Grace",  "Linus",   "Barbara", "Ken",
                                         "Margaret", "Dennis", "Frances", "Edsger",  "Radia"};
static const char *const demo_statuses[] = {"paid", "packed", "shipped", "delivered"};

static void demo_exec_sql(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        sp_log_warn(&sp_log_main, "generator: %s", PQresultErrorMessage(res));
    }
    PQclear(res);
}

/* One random business transaction. */
static void demo_generate_one(PGconn *c, unsigned *seed, int n)
{
    struct sp_buf sql;
    sp_buf_init(&sql);
    int pick = (int)(rand_r(seed) % 10);
    const char *name = demo_names[rand_r(seed) % SP_ARRAY_LEN(demo_names)];
    if (n < 3 || pick < 3) {
        sp_buf_printf(&sql,
                      "BEGIN;"
                      "INSERT INTO customers (name, email, profile, tags) VALUES ('%s', "
                      "'%s%d@example.com', '{\"vip\": %s, \"address\": {\"city\": \"Berlin\"}, "
                      "\"score\": %d.5}', ARRAY['new', 'web']);"
                      "INSERT INTO orders (customer_id, total, items, note) VALUES "
                      "(currval('customers_id_seq'), %d.%02d, ARRAY[%d, %d], "
                      "repeat('gift wrap please. ', %d));"
                      "COMMIT;",
                      name, name, n, (rand_r(seed) % 2) ? "true" : "false",
                      (int)(rand_r(seed) % 100), (int)(rand_r(seed) % 500),
                      (int)(rand_r(seed) % 100), (int)(rand_r(seed) % 50), (int)(rand_r(seed) % 50),
                      1 + (int)(rand_r(seed) % 3));
    } else if (pick < 8) {
        sp_buf_printf(&sql,
                      "UPDATE orders SET status = '%s', total = total + 1 WHERE id = "
                      "(SELECT id FROM orders ORDER BY random() LIMIT 1)",
                      demo_statuses[rand_r(seed) % SP_ARRAY_LEN(demo_statuses)]);
    } else {
        sp_buf_puts(&sql, "DELETE FROM orders WHERE id = "
                          "(SELECT min(id) FROM orders WHERE status = 'delivered')");
    }
    demo_exec_sql(c, sql.data);
    sp_buf_fini(&sql);
}

static void *demo_generator_main(void *arg)
{
    struct demo *d = arg;
    char *ci = demo_conninfo(d);
    PGconn *c = PQconnectdb(ci);
    free(ci);
    unsigned seed = (unsigned)time(NULL);
    int n = 0;
    int64_t period = 1000 / d->rate;
    /* Changes made before siphon created its slot would not be streamed: wait for it. */
    while (!*d->stop && PQstatus(c) == CONNECTION_OK) {
        PGresult *res = PQexec(c, "SELECT 1 FROM pg_replication_slots WHERE slot_name = "
                                  "'siphon_demo' AND active");
        bool ready = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0;
        PQclear(res);
        if (ready) {
            break;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    while (!*d->stop) {
        if (d->deadline_ms > 0 && sp_time_mono_ms() >= d->deadline_ms) {
            *d->stop = 1; /* the demo's time is up: stop the pipeline too */
            break;
        }
        if (PQstatus(c) == CONNECTION_OK) {
            demo_generate_one(c, &seed, n++);
        }
        struct timespec ts = {.tv_sec = period / 1000, .tv_nsec = (period % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    PQfinish(c);
    return NULL;
}

int sp_cli_demo(int duration_s, int rate)
{
    struct demo d;
    memset(&d, 0, sizeof(d));
    d.rate = rate;
    d.stop = sp_cli_stop_flag();
    sp_cli_install_signals();
    int rc = 1;
    struct sp_config *cfg = NULL;
    bool gen_started = false;
    pthread_t gen;
    char *yaml = NULL;

    if (demo_start_pg(&d) != 0 || demo_setup_schema(&d) != 0) {
        goto out;
    }
    char *ci = demo_conninfo(&d);
    yaml = sp_xasprintf("sources:\n"
                        "  shop:\n"
                        "    type: postgres\n"
                        "    snapshot: never\n"
                        "    connection: \"%s\"\n"
                        "    slot: siphon_demo\n"
                        "    publication: siphon_demo\n"
                        "sinks:\n"
                        "  terminal:\n"
                        "    type: stdout\n"
                        "    style: pretty\n"
                        "streams:\n"
                        "  - name: shop-to-terminal\n"
                        "    source: shop\n"
                        "    tables: [public.customers, public.orders]\n"
                        "    sink: terminal\n",
                        ci);
    free(ci);
    struct sp_diag diag;
    sp_diag_init(&diag);
    if (sp_cfg_load_string("<demo>", yaml, strlen(yaml), NULL, &cfg, &diag) != 0) {
        sp_diag_print(&diag, stderr);
        sp_diag_fini(&diag);
        goto out;
    }
    sp_diag_fini(&diag);
    if (duration_s > 0) {
        d.deadline_ms = sp_time_mono_ms() + (int64_t)duration_s * 1000;
    }
    sp_log_info(&sp_log_main,
                "streaming changes of public.customers and public.orders; a "
                "generator writes %d transactions per second; press Ctrl-C to stop",
                rate);
    if (pthread_create(&gen, NULL, demo_generator_main, &d) == 0) {
        gen_started = true;
    }
    rc = sp_cli_run_config(cfg, 0);
out:
    *d.stop = 1;
    if (gen_started) {
        pthread_join(gen, NULL);
    }
    sp_cfg_free(cfg);
    free(yaml);
    demo_stop_pg(&d);
    return rc;
}

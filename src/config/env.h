/*
 * Substitution in configuration values: `${NAME}` from the environment,
 * `${file:PATH}` from a file (one trailing newline dropped; a relative PATH
 * is taken from the configuration file's directory), `$$` for a literal
 * `$`. A `$` followed by anything else stays as written.
 */
#ifndef SIPHON_CONFIG_ENV_H
#define SIPHON_CONFIG_ENV_H

#include <stddef.h>

#include "config/config.h"
#include "config/yaml.h"
#include "core/err.h"
#include "util/buf.h"

/* Files read by ${file:PATH} may be at most this large. */
#define SP_ENV_FILE_MAX ((size_t)1 << 20)

/*
 * Expand s (len bytes) into out (appended). lookup resolves names (NULL:
 * getenv); base_dir resolves relative file paths (NULL: the current
 * directory). Returns 0, or SP_EINVAL with err (message and hint name the
 * variable or file, never a value). *used is set when anything was
 * substituted (may be NULL).
 */
int sp_env_expand(const char *s, size_t len, sp_env_fn lookup, const char *base_dir,
                  struct sp_buf *out, bool *used, struct sp_err *err);

/*
 * Append the contents of path (relative to base_dir unless absolute or
 * base_dir is NULL) to out, one trailing newline dropped; at most
 * SP_ENV_FILE_MAX bytes, no NUL bytes. Returns 0 or SP_EINVAL with err.
 */
int sp_env_read_file(const char *path, const char *base_dir, struct sp_buf *out,
                     struct sp_err *err);

/*
 * Expand every scalar value under node (mapping keys are left alone),
 * replacing their text in place and marking them substituted. Problems go to
 * d at the scalar's location. Returns the number of errors.
 */
int sp_env_substitute(struct sp_node *node, sp_env_fn lookup, const char *base_dir,
                      struct sp_diag *d);

#endif

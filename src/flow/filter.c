// SPDX-License-Identifier: Apache-2.0
/*
 * Flow "filter": pass only the events an expression matches.
 *
 *   expr   := or
 *   or     := and ( "||" and )*
 *   and    := unary ( "&&" unary )*
 *   unary  := "!" unary | test
 *   test   := value [ ("=="|"!="|"<"|"<="|">"|">=") value
 *                   | "in" "[" literal ( "," literal )* "]"
 *                   | "is" ["not"] "null" ]
 *   value  := literal | path | "changed" "(" column ")" | "(" expr ")"
 *
 * Literals are JSON's (strings in single or double quotes). Paths and their
 * values are flow/value.c's. Types are checked at compile time as far as
 * they are known (op, source.*, literals); column values are typed per
 * event. The FES form "[?(<expr>)]" is the same expression.
 *
 * What it does not do: arithmetic, functions besides changed(), regular
 * expressions.
 */
#include "flow/filter.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/diag.h"
#include "config/yaml.h"
#include "flow/flow.h"
#include "flow/value.h"
#include "util/buf.h"
#include "util/mem.h"

/* ---- tokens ---- */

enum fx_tok {
    T_EOF,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_AND,
    T_OR,
    T_NOT,
    T_STRING,
    T_NUMBER,
    T_TRUE,
    T_FALSE,
    T_NULL,
    T_IN,
    T_IS,
    T_NOTKW,
    T_CHANGED,
    T_PATH,
};

struct fx_token {
    enum fx_tok t;
    size_t off;
    size_t len;
    char *text; /* T_STRING: unescaped; T_NUMBER, T_PATH: as written */
    size_t tlen;
};

/* ---- the tree ---- */

enum fx_kind {
    FX_LIT,
    FX_PATH,
    FX_CMP,
    FX_AND,
    FX_OR,
    FX_NOT,
    FX_IN,
    FX_ISNULL,
    FX_CHANGED,
};

struct fx {
    enum fx_kind kind;
    size_t off;
    size_t len;
    enum sp_ftype type;
    enum fx_tok op;        /* FX_CMP */
    struct fx *a, *b;      /* operands */
    struct sp_fval lit;    /* FX_LIT; lit.s owned */
    struct sp_fpath *path; /* FX_PATH */
    bool negate;           /* FX_ISNULL: is not null */
    struct fx **items;     /* FX_IN: literals */
    int nitems;
    char *col; /* FX_CHANGED */
    const struct sp_relation *rel_cached;
    uint32_t rel_version;
    int col_index;
};

struct sp_filter {
    struct fx *root;
    char *text;
};

struct fx_parser {
    const char *s;
    size_t len;
    size_t pos;
    struct fx_token tok; /* current */
    struct sp_err *err;
    size_t err_off;
    size_t err_len;
    bool failed;
};

static int fx_fail(struct fx_parser *p, size_t off, size_t len, const char *hint, const char *fmt,
                   ...) SP_PRINTF(5, 6);

static int fx_fail(struct fx_parser *p, size_t off, size_t len, const char *hint, const char *fmt,
                   ...)
{
    if (p->failed) {
        return SP_EINVAL;
    }
    va_list ap;
    va_start(ap, fmt);
    char msg[400];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp_err_set(p->err, SP_EINVAL, "%s", msg);
    if (hint != NULL) {
        sp_err_hint(p->err, "%s", hint);
    }
    p->err_off = off;
    p->err_len = len > 0 ? len : 1;
    p->failed = true;
    return SP_EINVAL;
}

static const char *fx_tok_name(enum fx_tok t)
{
    static const char *const names[] = {
        "the end", "\"(\"",    "\")\"",    "\"[\"",  "\"]\"",  "\",\"",  "\"==\"",
        "\"!=\"",  "\"<\"",    "\"<=\"",   "\">\"",  "\">=\"", "\"&&\"", "\"||\"",
        "\"!\"",   "a string", "a number", "true",   "false",  "null",   "\"in\"",
        "\"is\"",  "\"not\"",  "changed",  "a path",
    };
    return names[t];
}

/* ---- lexer ---- */

static bool fx_path_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == '@' || (unsigned char)c >= 0x80;
}

static bool fx_path_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.' || c == '@' ||
           (unsigned char)c >= 0x80;
}

static void fx_put_utf8(struct sp_buf *b, unsigned cp)
{
    char u[4];
    if (cp < 0x80) {
        sp_buf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        sp_buf_append(b, u, 2);
    } else {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        sp_buf_append(b, u, 3);
    }
}

static int fx_lex_string(struct fx_parser *p, size_t start)
{
    char q = p->s[start];
    size_t i = start + 1;
    struct sp_buf b;
    sp_buf_init(&b);
    for (;;) {
        if (i >= p->len) {
            sp_buf_fini(&b);
            return fx_fail(p, start, 1, "close the string with the same quote",
                           "unterminated string");
        }
        char c = p->s[i];
        if (c == q) {
            i++;
            break;
        }
        if (c != '\\') {
            sp_buf_putc(&b, c);
            i++;
            continue;
        }
        if (i + 1 >= p->len) {
            continue; /* reported as unterminated */
        }
        char e = p->s[i + 1];
        const char *from = "\\'\"/nrtbf";
        const char *to = "\\'\"/\n\r\t\b\f";
        const char *f = strchr(from, e);
        if (e != '\0' && f != NULL) {
            sp_buf_putc(&b, to[f - from]);
            i += 2;
            continue;
        }
        if (e == 'u' && i + 6 <= p->len) {
            unsigned cp = 0;
            bool ok = true;
            for (size_t k = i + 2; k < i + 6; k++) {
                char h = p->s[k];
                int v = isdigit((unsigned char)h) ? h - '0'
                        : (h >= 'a' && h <= 'f')  ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F')  ? h - 'A' + 10
                                                  : -1;
                ok = ok && v >= 0;
                cp = cp * 16 + (unsigned)(v < 0 ? 0 : v);
            }
            if (ok) {
                fx_put_utf8(&b, cp);
                i += 6;
                continue;
            }
        }
        sp_buf_fini(&b);
        return fx_fail(p, i, 2, "escapes: \\\\ \\' \\\" \\n \\r \\t \\uXXXX",
                       "invalid escape in string");
    }
    p->tok.t = T_STRING;
    p->tok.len = i - start;
    p->tok.tlen = b.len;
    p->tok.text = b.data != NULL ? sp_buf_steal(&b) : sp_xstrdup("");
    p->pos = i;
    return 0;
}

static int fx_lex_number(struct fx_parser *p, size_t start)
{
    size_t i = start;
    if (p->s[i] == '-') {
        i++;
    }
    size_t d = i;
    while (i < p->len && isdigit((unsigned char)p->s[i])) {
        i++;
    }
    bool ok = i > d;
    if (i < p->len && p->s[i] == '.') {
        i++;
        size_t f = i;
        while (i < p->len && isdigit((unsigned char)p->s[i])) {
            i++;
        }
        ok = ok && i > f;
    }
    if (ok && i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) {
            i++;
        }
        size_t x = i;
        while (i < p->len && isdigit((unsigned char)p->s[i])) {
            i++;
        }
        ok = i > x;
    }
    if (!ok || (i < p->len && (isalpha((unsigned char)p->s[i]) || p->s[i] == '_'))) {
        while (i < p->len && (isalnum((unsigned char)p->s[i]) || p->s[i] == '.')) {
            i++;
        }
        return fx_fail(p, start, i - start, "numbers are written as in JSON: 42, -1.5, 2e10",
                       "invalid number");
    }
    p->tok.t = T_NUMBER;
    p->tok.len = i - start;
    p->tok.text = sp_xstrndup(p->s + start, i - start);
    p->tok.tlen = i - start;
    p->pos = i;
    return 0;
}

static int fx_lex_path(struct fx_parser *p, size_t start)
{
    size_t i = start;
    while (i < p->len) {
        if (fx_path_char(p->s[i])) {
            i++;
        } else if (p->s[i] == '[' && i > start) {
            /* an index or quoted member directly attached to the path */
            size_t j = i + 1;
            if (j < p->len && (p->s[j] == '\'' || p->s[j] == '"')) {
                char q = p->s[j++];
                while (j < p->len && p->s[j] != q) {
                    j++;
                }
                j++;
            } else {
                while (j < p->len && isdigit((unsigned char)p->s[j])) {
                    j++;
                }
            }
            if (j >= p->len || p->s[j] != ']') {
                return fx_fail(p, i, 1, "write e.g. after.tags[0] or after.meta['gift card']",
                               "unterminated \"[\" in path");
            }
            i = j + 1;
        } else {
            break;
        }
    }
    static const struct {
        const char *word;
        enum fx_tok t;
    } kw[] = {
        {"true", T_TRUE}, {"false", T_FALSE}, {"null", T_NULL},       {"in", T_IN},
        {"is", T_IS},     {"not", T_NOTKW},   {"changed", T_CHANGED},
    };
    p->tok.t = T_PATH;
    for (size_t k = 0; k < SP_ARRAY_LEN(kw); k++) {
        if (strlen(kw[k].word) == i - start && memcmp(kw[k].word, p->s + start, i - start) == 0) {
            p->tok.t = kw[k].t;
        }
    }
    p->tok.len = i - start;
    p->tok.text = sp_xstrndup(p->s + start, i - start);
    p->tok.tlen = i - start;
    p->pos = i;
    return 0;
}

static int fx_next(struct fx_parser *p)
{
    free(p->tok.text);
    memset(&p->tok, 0, sizeof(p->tok));
    while (p->pos < p->len && isspace((unsigned char)p->s[p->pos])) {
        p->pos++;
    }
    size_t i = p->pos;
    p->tok.off = i;
    p->tok.len = 1;
    if (i >= p->len) {
        p->tok.t = T_EOF;
        p->tok.len = 0;
        return 0;
    }
    char c = p->s[i];
    char n = 0;
    if (i + 1 < p->len) {
        n = p->s[i + 1];
    }
    static const char singles[] = "()[],";
    static const enum fx_tok single_toks[] = {T_LPAREN, T_RPAREN, T_LBRACK, T_RBRACK, T_COMMA};
    const char *sc = strchr(singles, c);
    if (c != '\0' && sc != NULL) {
        p->tok.t = single_toks[sc - singles];
        p->pos++;
        return 0;
    }
    struct {
        char a, b;
        enum fx_tok t;
    } const two[] = {{'=', '=', T_EQ}, {'!', '=', T_NE},  {'<', '=', T_LE},
                     {'>', '=', T_GE}, {'&', '&', T_AND}, {'|', '|', T_OR}};
    for (size_t k = 0; k < SP_ARRAY_LEN(two); k++) {
        if (c == two[k].a && n == two[k].b) {
            p->tok.t = two[k].t;
            p->tok.len = 2;
            p->pos += 2;
            return 0;
        }
    }
    if (c == '<' || c == '>' || c == '!') {
        p->tok.t = c == '<' ? T_LT : (c == '>' ? T_GT : T_NOT);
        p->pos++;
        return 0;
    }
    if (c == '\'' || c == '"') {
        return fx_lex_string(p, i);
    }
    if (isdigit((unsigned char)c) || (c == '-' && isdigit((unsigned char)n))) {
        return fx_lex_number(p, i);
    }
    if (fx_path_start(c)) {
        return fx_lex_path(p, i);
    }
    if (c == '=') {
        return fx_fail(p, i, 1, "compare with \"==\"", "unexpected \"=\"");
    }
    if (c == '&' || c == '|') {
        return fx_fail(p, i, 1, "write \"&&\" for and, \"||\" for or", "unexpected \"%c\"", c);
    }
    return fx_fail(p, i, 1, NULL, "unexpected character \"%c\"", c);
}

/* ---- parser ---- */

static void fx_free(struct fx *x)
{
    if (x == NULL) {
        return;
    }
    fx_free(x->a);
    fx_free(x->b);
    free((char *)x->lit.s);
    sp_fpath_free(x->path);
    for (int i = 0; i < x->nitems; i++) {
        fx_free(x->items[i]);
    }
    free(x->items);
    free(x->col);
    free(x);
}

static struct fx *fx_new(enum fx_kind kind, size_t off, size_t len, enum sp_ftype type)
{
    struct fx *x = sp_xcalloc(1, sizeof(*x));
    x->kind = kind;
    x->off = off;
    x->len = len;
    x->type = type;
    x->col_index = -1;
    return x;
}

static struct fx *fx_parse_or(struct fx_parser *p);

static struct fx *fx_literal(struct fx_parser *p)
{
    struct fx *x = NULL;
    struct fx_token *t = &p->tok;
    switch (t->t) {
    case T_STRING:
        x = fx_new(FX_LIT, t->off, t->len, SP_FT_STRING);
        x->lit.kind = SP_FV_STRING;
        x->lit.s = t->text;
        x->lit.len = t->tlen;
        t->text = NULL;
        break;
    case T_NUMBER:
        x = fx_new(FX_LIT, t->off, t->len, SP_FT_NUMBER);
        x->lit.kind = SP_FV_NUMBER;
        x->lit.s = t->text;
        x->lit.len = t->tlen;
        t->text = NULL;
        break;
    case T_TRUE:
    case T_FALSE:
        x = fx_new(FX_LIT, t->off, t->len, SP_FT_BOOL);
        x->lit.kind = SP_FV_BOOL;
        x->lit.b = t->t == T_TRUE;
        break;
    case T_NULL:
        x = fx_new(FX_LIT, t->off, t->len, SP_FT_NULL);
        x->lit.kind = SP_FV_NULL;
        break;
    default:
        return NULL;
    }
    fx_next(p);
    return x;
}

static struct fx *fx_parse_value(struct fx_parser *p)
{
    struct fx_token *t = &p->tok;
    if (p->failed) {
        return NULL;
    }
    struct fx *lit = fx_literal(p);
    if (lit != NULL) {
        return lit;
    }
    if (t->t == T_PATH) {
        struct sp_fpath *path = NULL;
        size_t off = 0;
        if (sp_fpath_parse(t->text, t->tlen, &path, &off, p->err) != 0) {
            p->failed = true;
            p->err_off = t->off + off;
            p->err_len = 1;
            return NULL;
        }
        struct fx *x = fx_new(FX_PATH, t->off, t->len, sp_fpath_type(path));
        x->path = path;
        fx_next(p);
        return x;
    }
    if (t->t == T_CHANGED) {
        size_t off = t->off;
        fx_next(p);
        if (t->t != T_LPAREN) {
            fx_fail(p, t->off, t->len, "write changed(column), e.g. changed(status)",
                    "expected \"(\" after changed");
            return NULL;
        }
        fx_next(p);
        if (t->t != T_PATH || strchr(t->text, '.') != NULL || strchr(t->text, '[') != NULL ||
            t->text[0] == '@') {
            fx_fail(p, t->off, t->len, "write changed(column), e.g. changed(status)",
                    "changed() takes a column name");
            return NULL;
        }
        struct fx *x = fx_new(FX_CHANGED, off, 0, SP_FT_BOOL);
        x->col = t->text;
        t->text = NULL;
        fx_next(p);
        if (t->t != T_RPAREN) {
            fx_free(x);
            fx_fail(p, t->off, t->len, NULL, "expected \")\" after the column of changed()");
            return NULL;
        }
        x->len = t->off + 1 - off;
        fx_next(p);
        return x;
    }
    if (t->t == T_LPAREN) {
        fx_next(p);
        struct fx *x = fx_parse_or(p);
        if (x == NULL) {
            return NULL;
        }
        if (t->t != T_RPAREN) {
            fx_free(x);
            fx_fail(p, t->off, t->len, "every \"(\" needs a \")\"", "expected \")\", found %s",
                    fx_tok_name(t->t));
            return NULL;
        }
        fx_next(p);
        return x;
    }
    fx_fail(p, t->off, t->len,
            "expected a path (after.status, op, source.table), a literal or \"(\"",
            "expected a value, found %s", fx_tok_name(t->t));
    return NULL;
}

static bool fx_is_order(enum fx_tok t)
{
    return t == T_LT || t == T_LE || t == T_GT || t == T_GE;
}

/* Type checks of a comparison whose operand types are known. */
static bool fx_check_cmp(struct fx_parser *p, struct fx *x)
{
    enum sp_ftype ta = x->a->type;
    enum sp_ftype tb = x->b->type;
    if (ta == SP_FT_ROW || tb == SP_FT_ROW) {
        struct fx *r = ta == SP_FT_ROW ? x->a : x->b;
        fx_fail(p, r->off, r->len, "name a column (after.status), or test the row with is null",
                "a whole row cannot be compared");
        return false;
    }
    if (fx_is_order(x->op) &&
        (ta == SP_FT_BOOL || ta == SP_FT_NULL || tb == SP_FT_BOOL || tb == SP_FT_NULL)) {
        struct fx *bad = ta == SP_FT_BOOL || ta == SP_FT_NULL ? x->a : x->b;
        fx_fail(p, bad->off, bad->len, "order comparisons take numbers or strings",
                "%s cannot be ordered", sp_ftype_name(bad->type));
        return false;
    }
    if (ta != SP_FT_ANY && tb != SP_FT_ANY && ta != SP_FT_NULL && tb != SP_FT_NULL && ta != tb) {
        fx_fail(p, x->b->off, x->b->len, "compare values of the same type",
                "cannot compare %s with %s", sp_ftype_name(ta), sp_ftype_name(tb));
        return false;
    }
    /* op == 'x': x must be an op */
    for (int side = 0; side < 2; side++) {
        struct fx *path = side == 0 ? x->a : x->b;
        struct fx *lit = side == 0 ? x->b : x->a;
        if (path->kind == FX_PATH && path->path->root == SP_FP_OP && lit->kind == FX_LIT &&
            lit->lit.kind == SP_FV_STRING &&
            (lit->lit.len != 1 || strchr("cudrtm", lit->lit.s[0]) == NULL)) {
            fx_fail(p, lit->off, lit->len,
                    "op is 'c' (insert), 'u' (update), 'd' (delete), 'r' (snapshot read), 't' "
                    "(truncate) or 'm' (message)",
                    "op is never equal to this string");
            return false;
        }
    }
    return true;
}

static struct fx *fx_parse_in(struct fx_parser *p, struct fx *left)
{
    struct fx_token *t = &p->tok;
    struct fx *x = fx_new(FX_IN, left->off, 0, SP_FT_BOOL);
    x->a = left;
    if (left->type == SP_FT_ROW) {
        fx_fail(p, left->off, left->len, "name a column, e.g. after.status in ['a', 'b']",
                "a whole row cannot be in a list");
        fx_free(x);
        return NULL;
    }
    fx_next(p);
    if (t->t != T_LBRACK) {
        fx_fail(p, t->off, t->len, "write e.g. op in ['c', 'u']", "expected \"[\" after in");
        fx_free(x);
        return NULL;
    }
    fx_next(p);
    for (;;) {
        size_t off = t->off;
        size_t len = t->len;
        struct fx *item = fx_literal(p);
        if (item == NULL) {
            fx_fail(p, off, len, "list items are literals: strings, numbers, true, false, null",
                    "expected a literal in the list, found %s", fx_tok_name(t->t));
            fx_free(x);
            return NULL;
        }
        x->items = sp_xrealloc(x->items, sizeof(struct fx *) * (size_t)(x->nitems + 1));
        x->items[x->nitems++] = item;
        /* every item must fit the left side, and (when the left side is a column) each other */
        struct fx cmp = {.kind = FX_CMP, .op = T_EQ, .a = left, .b = item};
        struct fx first = {.kind = FX_CMP, .op = T_EQ, .a = x->items[0], .b = item};
        if (!fx_check_cmp(p, &cmp) || !fx_check_cmp(p, &first)) {
            fx_free(x);
            return NULL;
        }
        if (t->t == T_COMMA) {
            fx_next(p);
            continue;
        }
        if (t->t != T_RBRACK) {
            fx_fail(p, t->off, t->len, NULL, "expected \",\" or \"]\" in the list, found %s",
                    fx_tok_name(t->t));
            fx_free(x);
            return NULL;
        }
        x->len = t->off + 1 - x->off;
        fx_next(p);
        return x;
    }
}

static struct fx *fx_parse_test(struct fx_parser *p)
{
    struct fx_token *t = &p->tok;
    struct fx *a = fx_parse_value(p);
    if (a == NULL) {
        return NULL;
    }
    if (t->t == T_IN) {
        return fx_parse_in(p, a);
    }
    if (t->t == T_IS) {
        fx_next(p);
        struct fx *x = fx_new(FX_ISNULL, a->off, 0, SP_FT_BOOL);
        x->a = a;
        if (t->t == T_NOTKW) {
            x->negate = true;
            fx_next(p);
        }
        if (t->t != T_NULL) {
            fx_fail(p, t->off, t->len, "write \"is null\" or \"is not null\"",
                    "expected null, found %s", fx_tok_name(t->t));
            fx_free(x);
            return NULL;
        }
        x->len = t->off + t->len - a->off;
        fx_next(p);
        return x;
    }
    if (t->t < T_EQ || t->t > T_GE) {
        return a;
    }
    enum fx_tok op = t->t;
    fx_next(p);
    struct fx *b = fx_parse_value(p);
    if (b == NULL) {
        fx_free(a);
        return NULL;
    }
    struct fx *x = fx_new(FX_CMP, a->off, b->off + b->len - a->off, SP_FT_BOOL);
    x->op = op;
    x->a = a;
    x->b = b;
    if (!fx_check_cmp(p, x)) {
        fx_free(x);
        return NULL;
    }
    if (t->t >= T_EQ && t->t <= T_GE) {
        fx_fail(p, t->off, t->len, "combine comparisons with && or ||",
                "comparisons cannot be chained");
        fx_free(x);
        return NULL;
    }
    return x;
}

/* Operands of !, && and || must be conditions. */
static bool fx_check_cond(struct fx_parser *p, const struct fx *x)
{
    if (x->type == SP_FT_BOOL || x->type == SP_FT_ANY) {
        return true;
    }
    fx_fail(p, x->off, x->len, "compare it, e.g. op == 'u' or after.note is not null",
            "%s is not a condition", sp_ftype_name(x->type));
    return false;
}

static struct fx *fx_parse_unary(struct fx_parser *p)
{
    struct fx_token *t = &p->tok;
    if (t->t == T_NOT) {
        size_t off = t->off;
        fx_next(p);
        struct fx *a = fx_parse_unary(p);
        if (a == NULL) {
            return NULL;
        }
        if (!fx_check_cond(p, a)) {
            fx_free(a);
            return NULL;
        }
        struct fx *x = fx_new(FX_NOT, off, a->off + a->len - off, SP_FT_BOOL);
        x->a = a;
        return x;
    }
    return fx_parse_test(p);
}

static struct fx *fx_parse_binary(struct fx_parser *p, enum fx_tok op)
{
    struct fx_token *t = &p->tok;
    struct fx *a = op == T_OR ? fx_parse_binary(p, T_AND) : fx_parse_unary(p);
    while (a != NULL && t->t == op) {
        fx_next(p);
        struct fx *b = op == T_OR ? fx_parse_binary(p, T_AND) : fx_parse_unary(p);
        if (b == NULL || !fx_check_cond(p, a) || !fx_check_cond(p, b)) {
            fx_free(a);
            fx_free(b);
            return NULL;
        }
        struct fx *x =
            fx_new(op == T_OR ? FX_OR : FX_AND, a->off, b->off + b->len - a->off, SP_FT_BOOL);
        x->a = a;
        x->b = b;
        a = x;
    }
    return a;
}

static struct fx *fx_parse_or(struct fx_parser *p)
{
    return fx_parse_binary(p, T_OR);
}

int sp_filter_compile(const char *expr, size_t len, struct sp_filter **out, size_t *err_off,
                      size_t *err_len, struct sp_err *err)
{
    struct fx_parser p = {.s = expr, .len = len, .err = err};
    *out = NULL;
    /* The FES JSONPath form: [?(<expr>)] */
    size_t b = 0;
    size_t e = len;
    while (b < e && isspace((unsigned char)expr[b])) {
        b++;
    }
    while (e > b && isspace((unsigned char)expr[e - 1])) {
        e--;
    }
    if (e - b >= 3 && memcmp(expr + b, "[?(", 3) == 0) {
        if (e - b < 5 || memcmp(expr + e - 2, ")]", 2) != 0) {
            *err_off = e > 0 ? e - 1 : 0;
            *err_len = 1;
            sp_err_set(err, SP_EINVAL, "a JSONPath filter must end with \")]\"");
            sp_err_hint(err, "write [?(@.NewImage.status != 'x')]");
            return SP_EINVAL;
        }
        p.pos = b + 3;
        p.len = e - 2;
    }
    fx_next(&p);
    struct fx *root = p.failed ? NULL : fx_parse_or(&p);
    if (root != NULL && !p.failed && p.tok.t != T_EOF) {
        fx_fail(&p, p.tok.off, p.tok.len, "combine conditions with && or ||",
                "unexpected %s after the expression", fx_tok_name(p.tok.t));
    }
    if (root != NULL && !p.failed) {
        fx_check_cond(&p, root);
    }
    free(p.tok.text);
    if (p.failed || root == NULL) {
        fx_free(root);
        if (!p.failed) {
            fx_fail(&p, 0, len, NULL, "empty expression");
        }
        *err_off = p.err_off;
        *err_len = p.err_len;
        return SP_EINVAL;
    }
    struct sp_filter *f = sp_xcalloc(1, sizeof(*f));
    f->root = root;
    f->text = sp_xstrndup(expr, len);
    *out = f;
    return 0;
}

void sp_filter_free(struct sp_filter *f)
{
    if (f == NULL) {
        return;
    }
    fx_free(f->root);
    free(f->text);
    free(f);
}

/* ---- evaluation ---- */

static int fx_eval(struct fx *x, const struct sp_event *ev, bool *out, struct sp_err *err);

static int fx_value(struct fx *x, const struct sp_event *ev, struct sp_fval *v, struct sp_err *err)
{
    if (x->kind == FX_LIT) {
        *v = x->lit;
        return 0;
    }
    if (x->kind == FX_PATH) {
        return sp_fpath_eval(x->path, ev, v, err);
    }
    bool b = false;
    int rc = fx_eval(x, ev, &b, err);
    v->kind = SP_FV_BOOL;
    v->b = b;
    return rc;
}

static const char *fx_kind_name(enum sp_fv_kind k)
{
    switch (k) {
    case SP_FV_NULL:
        return "null";
    case SP_FV_BOOL:
        return "a boolean";
    case SP_FV_NUMBER:
        return "a number";
    case SP_FV_STRING:
        return "a string";
    case SP_FV_JSON:
        return "a JSON object or array";
    case SP_FV_ROW:
    default:
        return "a row";
    }
}

/* Equality across kinds: different kinds are never equal. */
static int fx_equal(const struct sp_fval *a, const struct sp_fval *b, bool *eq, struct sp_err *err)
{
    if (a->kind != b->kind) {
        *eq = false;
        return 0;
    }
    switch (a->kind) {
    case SP_FV_NULL:
        *eq = true;
        return 0;
    case SP_FV_BOOL:
        *eq = a->b == b->b;
        return 0;
    case SP_FV_NUMBER: {
        int c;
        if (sp_flow_num_cmp(a->s, a->len, b->s, b->len, &c) != 0) {
            return sp_err_set(err, SP_EINVAL, "a value is not a valid number");
        }
        *eq = c == 0;
        return 0;
    }
    default:
        *eq = a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
        return 0;
    }
}

static int fx_eval_cmp(struct fx *x, const struct sp_event *ev, bool *out, struct sp_err *err)
{
    struct sp_fval a;
    struct sp_fval b;
    int rc = fx_value(x->a, ev, &a, err);
    if (rc == 0) {
        rc = fx_value(x->b, ev, &b, err);
    }
    if (rc != 0) {
        return rc;
    }
    if (x->op == T_EQ || x->op == T_NE) {
        bool eq = false;
        rc = fx_equal(&a, &b, &eq, err);
        *out = x->op == T_EQ ? eq : !eq;
        return rc;
    }
    if (a.kind == SP_FV_NULL || b.kind == SP_FV_NULL) {
        *out = false;
        return 0;
    }
    int c;
    if (a.kind == SP_FV_NUMBER && b.kind == SP_FV_NUMBER) {
        if (sp_flow_num_cmp(a.s, a.len, b.s, b.len, &c) != 0) {
            return sp_err_set(err, SP_EINVAL, "a value is not a valid number");
        }
    } else if (a.kind == SP_FV_STRING && b.kind == SP_FV_STRING) {
        size_t n = a.len < b.len ? a.len : b.len;
        c = memcmp(a.s, b.s, n);
        if (c == 0) {
            c = a.len < b.len ? -1 : (a.len > b.len ? 1 : 0);
        }
    } else {
        const struct fx *bad = a.kind == SP_FV_NUMBER || a.kind == SP_FV_STRING ? x->b : x->a;
        return sp_err_set(err, SP_EINVAL, "cannot order %s and %s (%s)", fx_kind_name(a.kind),
                          fx_kind_name(b.kind),
                          bad->kind == FX_PATH ? bad->path->text : "a literal");
    }
    switch (x->op) {
    case T_LT:
        *out = c < 0;
        break;
    case T_LE:
        *out = c <= 0;
        break;
    case T_GT:
        *out = c > 0;
        break;
    default:
        *out = c >= 0;
        break;
    }
    return 0;
}

/* Whether column x->col changed: see docs/flow-filter.md. */
static int fx_eval_changed(struct fx *x, const struct sp_event *ev, bool *out, struct sp_err *err)
{
    *out = false;
    if (ev->rel == NULL || ev->op == SP_OP_TRUNCATE || ev->op == SP_OP_MESSAGE) {
        return 0;
    }
    if (x->rel_cached != ev->rel || x->rel_version != ev->rel->version) {
        x->col_index = sp_flow_col_find(ev->rel, x->col);
        x->rel_cached = ev->rel;
        x->rel_version = ev->rel->version;
    }
    int i = x->col_index;
    if (i < 0) {
        return sp_err_set(err, SP_EINVAL, "changed(%s): table \"%s.%s\" has no column \"%s\"",
                          x->col, ev->rel->schema, ev->rel->table, x->col);
    }
    if (ev->op != SP_OP_UPDATE) {
        *out = true;
        return 0;
    }
    bool key = ev->rel->cols[i].key;
    if (ev->after == NULL || i >= ev->after->ncols) {
        return 0;
    }
    const struct sp_datum *a = &ev->after->cols[i];
    if (a->kind == SP_DATUM_UNCHANGED) {
        return 0; /* an unchanged TOASTed value */
    }
    if (ev->before == NULL || i >= ev->before->ncols || (ev->before_key_only && !key)) {
        /* no old value: a key column without an old key did not change; others may have */
        *out = !key;
        return 0;
    }
    const struct sp_datum *b = &ev->before->cols[i];
    if (b->kind == SP_DATUM_UNCHANGED) {
        *out = false;
        return 0;
    }
    *out = a->kind != b->kind ||
           (a->kind != SP_DATUM_NULL &&
            (a->len != b->len || (a->len > 0 && memcmp(a->data, b->data, a->len) != 0)));
    return 0;
}

static int fx_eval(struct fx *x, const struct sp_event *ev, bool *out, struct sp_err *err)
{
    int rc;
    *out = false;
    switch (x->kind) {
    case FX_AND:
        rc = fx_eval(x->a, ev, out, err);
        if (rc == 0 && *out) {
            rc = fx_eval(x->b, ev, out, err);
        }
        return rc;
    case FX_OR:
        rc = fx_eval(x->a, ev, out, err);
        if (rc == 0 && !*out) {
            rc = fx_eval(x->b, ev, out, err);
        }
        return rc;
    case FX_NOT:
        rc = fx_eval(x->a, ev, out, err);
        *out = !*out;
        return rc;
    case FX_CMP:
        return fx_eval_cmp(x, ev, out, err);
    case FX_CHANGED:
        return fx_eval_changed(x, ev, out, err);
    case FX_ISNULL: {
        struct sp_fval v;
        rc = fx_value(x->a, ev, &v, err);
        bool null = v.kind == SP_FV_NULL || (v.kind == SP_FV_ROW && !v.b);
        *out = x->negate ? !null : null;
        return rc;
    }
    case FX_IN: {
        struct sp_fval v;
        *out = false;
        rc = fx_value(x->a, ev, &v, err);
        for (int i = 0; rc == 0 && i < x->nitems && !*out; i++) {
            rc = fx_equal(&v, &x->items[i]->lit, out, err);
        }
        return rc;
    }
    case FX_LIT:
    case FX_PATH:
    default: {
        /* a value used as a condition: true only when it is boolean true */
        struct sp_fval v;
        rc = fx_value(x, ev, &v, err);
        if (rc != 0) {
            return rc;
        }
        if (v.kind != SP_FV_BOOL && v.kind != SP_FV_NULL) {
            return sp_err_set(err, SP_EINVAL, "%s is used as a condition but is %s",
                              x->kind == FX_PATH ? x->path->text : "a literal",
                              fx_kind_name(v.kind));
        }
        *out = v.kind == SP_FV_BOOL && v.b;
        return 0;
    }
    }
}

int sp_filter_eval(struct sp_filter *f, const struct sp_event *ev, bool *match, struct sp_err *err)
{
    *match = false;
    return fx_eval(f->root, ev, match, err);
}

/* ---- the flow ---- */

static int filter_compile(struct sp_flow *fl, struct sp_node *node, const struct sp_flow_cctx *cc)
{
    if (node == NULL || node->kind != SP_NODE_SCALAR || sp_node_is_null(node)) {
        const struct sp_loc *loc = node != NULL ? &node->loc : NULL;
        struct sp_diag_item *it =
            sp_diag_error(cc->d, loc, node != NULL ? node->span : 0,
                          "%s: flow \"filter\" takes an expression string, not %s", cc->what,
                          node != NULL ? sp_node_kind_name(node) : "nothing");
        sp_diag_hint(it, "write e.g. - filter: \"op == 'u' && after.status != before.status\"");
        return SP_EINVAL;
    }
    struct sp_filter *f = NULL;
    struct sp_err err;
    size_t off = 0;
    size_t len = 0;
    sp_err_clear(&err);
    if (sp_filter_compile(node->str, node->len, &f, &off, &len, &err) != 0) {
        struct sp_loc loc;
        sp_flow_scalar_loc(cc, node, off, &loc);
        struct sp_diag_item *it =
            sp_diag_error(cc->d, &loc, (int)len, "%s: filter: %s", cc->what, err.msg);
        if (err.hint[0] != '\0') {
            sp_diag_hint(it, "%s", err.hint);
        }
        return SP_EINVAL;
    }
    fl->state = f;
    return 0;
}

static int filter_apply(struct sp_flow *fl, const struct sp_event *ev, struct sp_event_list *out,
                        struct sp_err *err)
{
    (void)out;
    bool match;
    int rc = sp_filter_eval(fl->state, ev, &match, err);
    if (rc != 0) {
        return rc;
    }
    return match ? SP_FLOW_PASS : SP_FLOW_DROP;
}

static void filter_free(struct sp_flow *fl)
{
    sp_filter_free(fl->state);
    fl->state = NULL;
}

const struct sp_flow_ops sp_flow_filter = {
    .name = "filter",
    .usage = "an expression string (docs/flow-filter.md), e.g. `- filter: \"op == 'u' && "
             "changed(status)\"`",
    .summary = "pass only the events an expression matches",
    .compile = filter_compile,
    .apply = filter_apply,
    .free = filter_free,
};

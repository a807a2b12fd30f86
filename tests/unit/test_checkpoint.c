// SPDX-License-Identifier: Apache-2.0
/* Checkpoint tracker: out-of-order acknowledgements never confirm past an unfinished transaction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/checkpoint.h"

static void nothing_confirmed_before_any_commit(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *t = sp_ckpt_begin(ck, 100);
    sp_ckpt_hold(t);
    sp_ckpt_release(ck, t);
    assert_int_equal(sp_ckpt_confirmable(ck), 0);
    assert_false(sp_ckpt_idle(ck));
    sp_ckpt_commit(ck, t, 120);
    assert_int_equal(sp_ckpt_confirmable(ck), 120);
    assert_true(sp_ckpt_idle(ck));
    sp_ckpt_free(ck);
}

static void committed_but_unacked_is_not_confirmed(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *t = sp_ckpt_begin(ck, 100);
    sp_ckpt_hold(t);
    sp_ckpt_hold(t);
    sp_ckpt_commit(ck, t, 120);
    assert_int_equal(sp_ckpt_confirmable(ck), 0);
    sp_ckpt_release(ck, t);
    assert_int_equal(sp_ckpt_confirmable(ck), 0);
    sp_ckpt_release(ck, t);
    assert_int_equal(sp_ckpt_confirmable(ck), 120);
    sp_ckpt_free(ck);
}

static void later_transaction_waits_for_earlier(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *a = sp_ckpt_begin(ck, 100);
    sp_ckpt_hold(a);
    sp_ckpt_commit(ck, a, 110);
    struct sp_ckpt_txn *b = sp_ckpt_begin(ck, 200);
    sp_ckpt_hold(b);
    sp_ckpt_commit(ck, b, 210);
    struct sp_ckpt_txn *c = sp_ckpt_begin(ck, 300);
    sp_ckpt_hold(c);
    sp_ckpt_commit(ck, c, 310);
    /* acks arrive c, b, a */
    sp_ckpt_release(ck, c);
    assert_int_equal(sp_ckpt_confirmable(ck), 0);
    sp_ckpt_release(ck, b);
    assert_int_equal(sp_ckpt_confirmable(ck), 0);
    assert_int_equal(sp_ckpt_pending(ck), 3);
    sp_ckpt_release(ck, a);
    assert_int_equal(sp_ckpt_confirmable(ck), 310);
    assert_int_equal(sp_ckpt_pending(ck), 0);
    sp_ckpt_free(ck);
}

static void middle_gap_stops_at_gap(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = sp_ckpt_begin(ck, (uint64_t)(i + 1) * 100);
        sp_ckpt_hold(t[i]);
        sp_ckpt_commit(ck, t[i], (uint64_t)(i + 1) * 100 + 10);
    }
    sp_ckpt_release(ck, t[0]);
    sp_ckpt_release(ck, t[1]);
    sp_ckpt_release(ck, t[3]);
    sp_ckpt_release(ck, t[4]);
    assert_int_equal(sp_ckpt_confirmable(ck), 210);
    sp_ckpt_release(ck, t[2]);
    assert_int_equal(sp_ckpt_confirmable(ck), 510);
    sp_ckpt_free(ck);
}

static void empty_transaction_confirms_on_commit(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *t = sp_ckpt_begin(ck, 100);
    sp_ckpt_commit(ck, t, 130);
    assert_int_equal(sp_ckpt_confirmable(ck), 130);
    sp_ckpt_free(ck);
}

static void aborted_transaction_never_confirms_but_unblocks(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *a = sp_ckpt_begin(ck, 100);
    sp_ckpt_hold(a);
    sp_ckpt_commit(ck, a, 110);
    sp_ckpt_release(ck, a);
    struct sp_ckpt_txn *b = sp_ckpt_begin(ck, 200);
    sp_ckpt_hold(b);
    sp_ckpt_abort(ck, b);                            /* connection lost mid-transaction */
    struct sp_ckpt_txn *b2 = sp_ckpt_begin(ck, 200); /* resent */
    sp_ckpt_hold(b2);
    sp_ckpt_commit(ck, b2, 210);
    sp_ckpt_release(ck, b2);
    assert_int_equal(sp_ckpt_confirmable(ck), 110); /* b still held */
    sp_ckpt_release(ck, b);
    assert_int_equal(sp_ckpt_confirmable(ck), 210);
    sp_ckpt_free(ck);
}

static void confirmable_is_monotonic(void **state)
{
    (void)state;
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *a = sp_ckpt_begin(ck, 500);
    sp_ckpt_commit(ck, a, 510);
    struct sp_ckpt_txn *b = sp_ckpt_begin(ck, 100); /* should not happen, must not go back */
    sp_ckpt_commit(ck, b, 110);
    assert_int_equal(sp_ckpt_confirmable(ck), 510);
    sp_ckpt_free(ck);
}

static void many_transactions_random_order(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct sp_ckpt *ck = sp_ckpt_new();
    struct sp_ckpt_txn *t[N];
    for (int i = 0; i < N; i++) {
        t[i] = sp_ckpt_begin(ck, (uint64_t)i * 10 + 10);
        sp_ckpt_hold(t[i]);
        sp_ckpt_hold(t[i]);
        sp_ckpt_commit(ck, t[i], (uint64_t)i * 10 + 15);
    }
    /* Release in a scrambled order; after each step the confirmable LSN must be
     * exactly the end of the longest fully released prefix. */
    static int held[N];
    for (int i = 0; i < N; i++) {
        held[i] = 2;
    }
    unsigned seed = 12345;
    int done = 0;
    for (int step = 0; step < 2 * N; step++) {
        int i;
        do {
            seed = seed * 1103515245u + 12345u;
            i = (int)((seed >> 8) % N);
        } while (held[i] == 0);
        held[i]--;
        sp_ckpt_release(ck, t[i]);
        while (done < N && held[done] == 0) {
            done++;
        }
        uint64_t want = done == 0 ? 0 : (uint64_t)(done - 1) * 10 + 15;
        assert_int_equal(sp_ckpt_confirmable(ck), want);
    }
    assert_true(sp_ckpt_idle(ck));
    sp_ckpt_free(ck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_confirmed_before_any_commit),
        cmocka_unit_test(committed_but_unacked_is_not_confirmed),
        cmocka_unit_test(later_transaction_waits_for_earlier),
        cmocka_unit_test(middle_gap_stops_at_gap),
        cmocka_unit_test(empty_transaction_confirms_on_commit),
        cmocka_unit_test(aborted_transaction_never_confirms_but_unblocks),
        cmocka_unit_test(confirmable_is_monotonic),
        cmocka_unit_test(many_transactions_random_order),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}

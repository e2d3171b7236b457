
/*
 * Unit test of ngx_http_usage_window.c: the cases of the design's sketch
 * (docs/FLEET-DESIGN.md, section 4.6.2), the counters, sequences near
 * 2^64, and a random walk checked against a plain model.
 */


#include "../../src/ngx_http_usage_window.c"

#include "tap.h"


#define SEQS  16384

static ngx_uint_t  applied[SEQS];


/* what the store's apply does with one record of the stream */

static ngx_uint_t
deliver(ngx_http_usage_window_t *w, uint64_t s)
{
    if (ngx_http_usage_window_seen(w, s)) {
        return 0;
    }

    ngx_http_usage_window_mark(w, s);
    applied[s]++;

    return 1;
}


static void
reset(ngx_http_usage_window_t *w)
{
    ngx_memzero(w, sizeof(ngx_http_usage_window_t));
    ngx_memzero(applied, sizeof(applied));
}


/* each of 1..n applied exactly once, and nothing else */

static ngx_uint_t
once(uint64_t n)
{
    uint64_t  s;

    for (s = 0; s < SEQS; s++) {
        if (applied[s] != (s >= 1 && s <= n)) {
            tap_diag("seq %llu applied %lu times", (unsigned long long) s,
                     (unsigned long) applied[s]);
            return 0;
        }
    }

    return 1;
}


static void
test_sketch(void)
{
    uint64_t                 s, a, b;
    ngx_uint_t               all;
    ngx_http_usage_window_t  w;

    reset(&w);
    all = 1;

    for (s = 1; s <= 10; s++) {
        all &= deliver(&w, s);
    }

    for (s = 6; s <= 12; s++) {
        (void) deliver(&w, s);                     /* 6..10 again */
    }

    tap_ok(all && once(12) && w.hwm == 12 && w.holes == 0 && w.lost == 0,
           "in order, then a retried batch: each seq applied once");

    /* a handover: the old owner's 5..8 and the new one's 5..20, merged */
    reset(&w);

    for (s = 1; s <= 4; s++) {
        (void) deliver(&w, s);
    }

    for (a = 5, b = 5; a <= 8 || b <= 20; /* void */) {
        if (b <= 20 && (b % 3 == 0 || a > 8)) {
            (void) deliver(&w, b++);

        } else {
            (void) deliver(&w, a++);
        }
    }

    tap_ok(once(20) && w.holes == 0 && w.lost == 0,
           "two overlapping gap-free sequences merged: each seq once");

    /* re-publishers after a flush: A sends 71..100, then B 60..100 */
    reset(&w);

    for (s = 1; s <= 65; s++) {
        (void) deliver(&w, s);
    }

    for (s = 71; s <= 100; s++) {
        (void) deliver(&w, s);
    }

    all = (w.holes == 5);                          /* 66..70 */

    for (s = 60; s <= 100; s++) {
        (void) deliver(&w, s);
    }

    tap_ok(all && once(100) && w.holes == 0 && w.lost == 0,
           "two re-publishers: the holes of the first filled by the second");

    /* a hole older than the window stays lost, counted once */
    reset(&w);
    (void) deliver(&w, 1);
    (void) deliver(&w, 3);                         /* 2 skipped */

    all = (w.holes == 1 && w.lost == 0);

    for (s = 4; s <= 3000; s++) {
        (void) deliver(&w, s);
    }

    tap_ok(all && !deliver(&w, 2) && applied[2] == 0 && w.holes == 0
           && w.lost == 1,
           "a hole older than the window: too late, counted lost once");
}


static void
test_edges(void)
{
    ngx_uint_t               all;
    ngx_http_usage_window_t  w, copy;

    reset(&w);

    tap_ok(ngx_http_usage_window_seen(&w, 0)
           && !ngx_http_usage_window_seen(&w, 1),
           "seq 0 is always seen, 1 is new in an empty window");

    ngx_http_usage_window_mark(&w, 0);

    tap_ok(w.hwm == 0 && w.holes == 0 && w.lost == 0,
           "marking seq 0 changes nothing");

    /* the edge of the window: hwm - 1023 is in it, hwm - 1024 is not */
    reset(&w);
    (void) deliver(&w, 2000);

    tap_ok(w.holes == 1023 && w.lost == 2000 - 1024
           && !ngx_http_usage_window_seen(&w, 2000 - 1023)
           && ngx_http_usage_window_seen(&w, 2000 - 1024)
           && ngx_http_usage_window_seen(&w, 2000)
           && !ngx_http_usage_window_seen(&w, 2001),
           "first seq 2000: 977..1999 holes, 1..976 lost, the edge at 976");

    ngx_memcpy(&copy, &w, sizeof(w));
    ngx_http_usage_window_mark(&w, 2000);
    ngx_http_usage_window_mark(&w, 5);
    all = (ngx_memcmp(&copy, &w, sizeof(w)) == 0);
    ngx_http_usage_window_mark(&w, 1500);
    ngx_http_usage_window_mark(&w, 1500);

    tap_ok(all && w.holes == 1022 && w.lost == 976
           && ngx_http_usage_window_seen(&w, 1500),
           "marking a seen or too old seq changes nothing; a hole fills "
           "once");

}


static void
test_slides(void)
{
    uint64_t                 s, top;
    ngx_uint_t               all;
    ngx_http_usage_window_t  w;

    /* far ahead: the whole window slides out */
    reset(&w);

    for (s = 1; s <= 100; s++) {
        (void) deliver(&w, s);
    }

    (void) deliver(&w, 98);
    ngx_http_usage_window_mark(&w, 150);           /* 101..149: 49 holes */
    ngx_http_usage_window_mark(&w, 1000000);

    tap_ok(w.hwm == 1000000 && w.holes == 1023
           && w.lost == 49 + (1000000 - 1024 - 150)
           && ngx_http_usage_window_seen(&w, 150)
           && ngx_http_usage_window_seen(&w, 100)
           && !ngx_http_usage_window_seen(&w, 1000000 - 1)
           && !ngx_http_usage_window_seen(&w, 1000000 - 1023)
           && ngx_http_usage_window_seen(&w, 1000000 - 1024),
           "seq far ahead: the window slides out whole, its holes lost");

    /* a slide of exactly BITS - 1 and of BITS */
    reset(&w);
    ngx_http_usage_window_mark(&w, 1);
    ngx_http_usage_window_mark(&w, 1024);          /* 2..1023: holes */
    all = (w.holes == 1022 && w.lost == 0
           && !ngx_http_usage_window_seen(&w, 2)
           && ngx_http_usage_window_seen(&w, 1));
    ngx_http_usage_window_mark(&w, 2048);          /* all 1022 leave */

    tap_ok(all && w.holes == 1023 && w.lost == 1022
           && !ngx_http_usage_window_seen(&w, 1025)
           && ngx_http_usage_window_seen(&w, 1024),
           "slides of BITS - 1 and BITS count each leaving hole once");

    /* near 2^64: no arithmetic wraps */
    reset(&w);
    top = (uint64_t) -1;
    ngx_http_usage_window_mark(&w, top - 5);
    ngx_http_usage_window_mark(&w, top);

    tap_ok(w.hwm == top && w.holes == 1022 && w.lost == top - 1024
           && ngx_http_usage_window_seen(&w, top)
           && ngx_http_usage_window_seen(&w, top - 5)
           && !ngx_http_usage_window_seen(&w, top - 1)
           && !ngx_http_usage_window_seen(&w, top - 1023)
           && ngx_http_usage_window_seen(&w, top - 1024)
           && ngx_http_usage_window_seen(&w, 1),
           "sequences near 2^64: the window's edge and counters hold");
}


/*
 * A random walk (a fixed seed) of the stream's ways of delivering one
 * origin: runs in order, retries, jumps back and ahead.  After each step
 * the window agrees with a model that remembers every seq: seen is "held,
 * or older than the window", holes are the unheld seqs of the window,
 * lost those below it.
 */

static uint64_t  rnd_state = 0x2545f4914f6cdd1dULL;

static uint64_t
rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;

    return rnd_state;
}


static ngx_uint_t
model_agrees(ngx_http_usage_window_t *w, u_char *held, uint64_t hwm)
{
    uint64_t  s, holes, lost, low;

    holes = 0;
    lost = 0;
    low = (hwm > 1024) ? hwm - 1023 : 1;

    for (s = 1; s <= hwm; s++) {
        if (held[s]) {
            continue;
        }

        if (s < low) {
            lost++;

        } else {
            holes++;
        }
    }

    if (w->hwm != hwm || w->holes != holes || w->lost != lost) {
        tap_diag("hwm %llu/%llu holes %llu/%llu lost %llu/%llu",
                 (unsigned long long) w->hwm, (unsigned long long) hwm,
                 (unsigned long long) w->holes, (unsigned long long) holes,
                 (unsigned long long) w->lost, (unsigned long long) lost);
        return 0;
    }

    for (s = 0; s < SEQS; s++) {
        if (ngx_http_usage_window_seen(w, s)
            != (s == 0 || held[s] || s < low))
        {
            tap_diag("seen(%llu) disagrees", (unsigned long long) s);
            return 0;
        }
    }

    return 1;
}


static void
test_random(void)
{
    u_char                   held[SEQS];
    uint64_t                 s, hwm, step;
    ngx_uint_t               i, n, ok, dups;
    ngx_http_usage_window_t  w;

    reset(&w);
    ngx_memzero(held, sizeof(held));
    hwm = 0;
    s = 1;
    ok = 1;
    dups = 0;

    for (step = 0; step < 8000 && ok; step++) {
        switch (rnd() % 8) {
        case 0:
            s = (s > 40) ? s - rnd() % 40 : 1;      /* a retry */
            break;
        case 1:
            s += rnd() % 30;                        /* a gap */
            break;
        case 2:
            if (rnd() % 16 == 0 && s > 1500) {
                s -= 1000 + rnd() % 500;            /* far back */
            }
            break;
        case 3:
            if (rnd() % 16 == 0) {
                s += 1000 + rnd() % 300;            /* far ahead */
            }
            break;
        default:
            break;
        }

        for (n = 1 + rnd() % 20, i = 0; i < n && s < SEQS; i++, s++) {
            if (held[s] || s == 0 || (hwm > 1024 && s < hwm - 1023)) {
                dups += deliver(&w, s);         /* must be 0 */
                continue;
            }

            if (!deliver(&w, s)) {
                dups++;
            }

            held[s] = 1;
            hwm = (s > hwm) ? s : hwm;
        }

        if (s >= SEQS - 64) {
            break;
        }

        ok = (dups == 0) && model_agrees(&w, held, hwm);
    }

    for (s = 0; s < SEQS && ok; s++) {
        ok = (applied[s] == held[s]);
    }

    tap_ok(ok && step > 100 && w.lost > 0 && w.holes > 0,
           "a random walk of %lu steps agrees with the model (up to seq "
           "%llu, %llu lost, %llu holes)", (unsigned long) step,
           (unsigned long long) hwm, (unsigned long long) w.lost,
           (unsigned long long) w.holes);
}


int
main(void)
{
    tap_ok(sizeof(ngx_http_usage_window_t) == 3 * 8 + 1024 / 8,
           "the window is %lu bytes, fixed", (unsigned long)
           sizeof(ngx_http_usage_window_t));

    test_sketch();
    test_edges();
    test_slides();
    test_random();

    return tap_done();
}


/*
 * The dedup window of one origin.  The stream delivers an origin's events
 * at least once, mostly in order: a retried batch comes again, two owners
 * of a handover overlap, re-publishers after a flush send ranges that
 * cross.  A high-water mark and the bits of the 1024 sequences below it
 * drop every copy after the first at a constant cost, and the sequences
 * skipped on the way are holes: filled when they come late, lost (and
 * counted, for the gaps metric) when they leave the window unfilled.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_window.h"


#define ngx_http_usage_window_word(w, s)                                     \
    (w)->bits[((s) % NGX_HTTP_USAGE_WINDOW_BITS) / 64]
#define ngx_http_usage_window_bit(s)  ((uint64_t) 1 << ((s) % 64))


static void ngx_http_usage_window_slide(ngx_http_usage_window_t *w,
    uint64_t seq);


ngx_uint_t
ngx_http_usage_window_seen(ngx_http_usage_window_t *w, uint64_t seq)
{
    if (seq > w->hwm) {
        return 0;
    }

    /* hwm - seq, not seq + BITS > hwm: no overflow near 2^64 */
    if (seq == 0 || w->hwm - seq >= NGX_HTTP_USAGE_WINDOW_BITS) {
        return 1;
    }

    return (ngx_http_usage_window_word(w, seq)
            & ngx_http_usage_window_bit(seq)) != 0;
}


void
ngx_http_usage_window_mark(ngx_http_usage_window_t *w, uint64_t seq)
{
    if (ngx_http_usage_window_seen(w, seq)) {
        return;
    }

    if (seq <= w->hwm) {
        /* a hole filled: the event came late, but inside the window */
        w->holes--;

    } else {
        ngx_http_usage_window_slide(w, seq);
    }

    ngx_http_usage_window_word(w, seq) |= ngx_http_usage_window_bit(seq);
}


/* every seq up to seq is held: a zone that has all of an origin's events */

void
ngx_http_usage_window_fill(ngx_http_usage_window_t *w, uint64_t seq)
{
    if (seq == 0) {
        return;
    }

    w->hwm = seq;
    w->holes = 0;
    ngx_memset(w->bits, 0xff, sizeof(w->bits));
}


/*
 * The window moves up to end at seq.  The sequences passed over become
 * holes; those of the old window that leave it unmarked are lost.  At
 * most BITS - 1 steps; a longer jump clears the whole bitmap at once.
 */

static void
ngx_http_usage_window_slide(ngx_http_usage_window_t *w, uint64_t seq)
{
    uint64_t  t, d;

    d = seq - w->hwm;

    if (d >= NGX_HTTP_USAGE_WINDOW_BITS) {
        /* all the holes of the old window leave it, and so do the seqs
         * passed over up to seq - BITS; the BITS - 1 seqs below seq are
         * the new window's holes (seq >= BITS: all of them exist) */
        w->lost += w->holes + (d - NGX_HTTP_USAGE_WINDOW_BITS);
        w->holes = NGX_HTTP_USAGE_WINDOW_BITS - 1;
        ngx_memzero(w->bits, sizeof(w->bits));
        w->hwm = seq;
        return;
    }

    /* not "t <= seq": seq may be 2^64 - 1 */
    t = w->hwm;

    do {
        t++;

        /* t's bit held t - BITS (if there is such a seq): it leaves */
        if (t > NGX_HTTP_USAGE_WINDOW_BITS
            && !(ngx_http_usage_window_word(w, t)
                 & ngx_http_usage_window_bit(t)))
        {
            w->holes--;
            w->lost++;
        }

        ngx_http_usage_window_word(w, t) &= ~ngx_http_usage_window_bit(t);

    } while (t != seq);

    w->holes += d - 1;
    w->hwm = seq;
}

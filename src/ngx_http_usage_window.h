
/*
 * The per-origin dedup window of the fleet (docs/FLEET-DESIGN.md, section
 * 4.6.2): which sequences of one origin a zone holds, as the highest one
 * and a bitmap of the 1024 up to it (the IPsec and DTLS anti-replay
 * window, RFC 4303 3.4.3).  Plain data of a fixed size and no pointers,
 * so that it can live in the zone and be saved in the state file; the
 * caller holds the zone's lock.
 */


#ifndef _NGX_HTTP_USAGE_WINDOW_H_INCLUDED_
#define _NGX_HTTP_USAGE_WINDOW_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_USAGE_WINDOW_BITS   1024


typedef struct {
    uint64_t                     hwm;          /* highest seq marked,
                                                  0: none yet */
    uint64_t                     holes;        /* seqs of the window
                                                  skipped, not yet marked */
    uint64_t                     lost;         /* holes that left the window
                                                  unfilled: never applied */

    /* bit (s % BITS): s is marked, for hwm - BITS < s <= hwm */
    uint64_t                     bits[NGX_HTTP_USAGE_WINDOW_BITS / 64];
} ngx_http_usage_window_t;


/*
 * 1: drop the event, it is here already, or it is older than the window
 * and cannot be told apart from one that is (or it is seq 0, which no
 * origin assigns); 0: apply it, then mark it
 */
ngx_uint_t ngx_http_usage_window_seen(ngx_http_usage_window_t *w,
    uint64_t seq);

/* marks seq as held; a seq that ngx_http_usage_window_seen() drops is
 * left alone, so marking twice changes nothing */
void ngx_http_usage_window_mark(ngx_http_usage_window_t *w, uint64_t seq);


/* every seq from 1 to seq held, as after a full copy of its origin's
 * events (seq 0: the window is left as it is) */
void ngx_http_usage_window_fill(ngx_http_usage_window_t *w, uint64_t seq);


#endif /* _NGX_HTTP_USAGE_WINDOW_H_INCLUDED_ */

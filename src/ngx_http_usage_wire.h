
/*
 * The fleet's wire format (docs/FLEET-DESIGN.md, section 4.2): one event
 * as a packed record of a stream entry, and the 64-bit origin id as the
 * entry's 16 hex digits.  No store, no Redis: bytes in, bytes out.
 *
 * A record is little-endian whatever the machine (a fleet may mix them),
 * a fixed 64-byte header, then the names, the client id and the metadata:
 *
 *    0  u32  len              the whole record: 64 + the four lengths
 *    4  u64  seq              the origin's sequence, never 0
 *   12  u8   flags            NGX_HTTP_USAGE_WIRE_TIME, _VOID
 *   13  u8   reserved         0
 *   14  u16  entity_len
 *   16  u16  type_len
 *   18  u16  id_len           0: no client id
 *   20  u32  metadata_len
 *   24  u8   uuid[16]
 *   40  i64  time             event time, ms
 *   48  i64  created          receipt at the origin, ms
 *   56  u64  value            IEEE-754 bits
 *   64  entity, type, id, metadata
 */


#ifndef _NGX_HTTP_USAGE_WIRE_H_INCLUDED_
#define _NGX_HTTP_USAGE_WIRE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_store.h"


#define NGX_HTTP_USAGE_WIRE_HEADER   64

/* flags */
#define NGX_HTTP_USAGE_WIRE_TIME     0x01  /* time given by the client */
#define NGX_HTTP_USAGE_WIRE_VOID     0x02  /* an ack=redis event withdrawn:
                                              its seq only, no event */

#define NGX_HTTP_USAGE_ORIGIN_HEX    16


/* a buffer of concatenated records, walked by ngx_http_usage_wire_next() */
typedef struct {
    u_char                      *pos;
    u_char                      *end;
    size_t                       metadata_max;
    ngx_uint_t                   flags;        /* of the last record */
} ngx_http_usage_wire_t;


/* the bytes rec takes; 0: a name or id longer than the store takes, or a
 * record of 4 GB or more */
size_t ngx_http_usage_wire_size(ngx_http_usage_record_t *rec);

/*
 * Writes rec at p (ngx_http_usage_wire_size() bytes, no alignment needed)
 * and returns the end.  rec->created may not be known yet: the record is
 * patched by ngx_http_usage_wire_set() once it is, under the zone's lock.
 */
u_char *ngx_http_usage_wire_encode(u_char *p, ngx_http_usage_record_t *rec,
    uint64_t seq);
size_t ngx_http_usage_wire_void(u_char *p, uint64_t seq);
void ngx_http_usage_wire_set(u_char *record, uint64_t seq, int64_t created);

/* of a record this module encoded: no checks */
size_t ngx_http_usage_wire_length(u_char *record);
uint64_t ngx_http_usage_wire_seq(u_char *record);
int64_t ngx_http_usage_wire_created(u_char *record);

void ngx_http_usage_wire_init(ngx_http_usage_wire_t *w, u_char *buf,
    size_t len, size_t metadata_max);

/*
 * The next record of the buffer:
 *
 *   NGX_OK        a record, in *rec and *seq; its strings point into the
 *                 buffer (no copies), w->flags has its flags.  A VOID
 *                 record has its seq only: rec is empty;
 *   NGX_DONE      the end of the buffer;
 *   NGX_DECLINED  a record whose length is sane but whose contents are
 *                 not an event this module would have stored: skipped,
 *                 the walk goes on (*seq is what it claims; rec is no
 *                 event, its fields are not to be used);
 *   NGX_ERROR     no record can be found from here (a truncated header, a
 *                 length outside the buffer): the rest of the buffer is
 *                 lost, and every later call says so again.
 *
 * Lengths are checked against the buffer before anything is read, so no
 * bytes are read outside it whatever it holds.  A record is declined for
 * lengths that do not sum to len or pass the store's limits (metadata:
 * w->metadata_max), unknown flags, seq 0, a value that is not finite,
 * times the state file would refuse, names that the API would not have
 * stored (ngx_http_usage_check_name(): valid UTF-8, trimmed, no control
 * characters, 255 and 100 characters at most) and client ids that it
 * would not have taken (1 to 128 characters, no control characters).
 *
 * The metadata is only bounded here: that it is a JSON object of valid
 * UTF-8 is for the caller to check (with jansson, as the state file's
 * reader does), after its dedup window, so that records already seen cost
 * no JSON parse.
 */
ngx_int_t ngx_http_usage_wire_next(ngx_http_usage_wire_t *w,
    ngx_http_usage_record_t *rec, uint64_t *seq);

/* 16 lower-case hex digits, the entry's "o" field */
u_char *ngx_http_usage_origin_hex(u_char *dst, uint64_t origin);

/* exactly 16 lower-case hex digits, not all zeros (0 names no origin) */
ngx_int_t ngx_http_usage_origin_parse(u_char *p, size_t len,
    uint64_t *origin);


#endif /* _NGX_HTTP_USAGE_WIRE_H_INCLUDED_ */

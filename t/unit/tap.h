
/*
 * The few lines of TAP a unit test prints, for t/unit.t: "ok N - what"
 * or "not ok N - what" per group of assertions, "# ..." to explain a
 * failure, and the plan "1..N" last.  The exit status is 1 if any failed.
 */


#ifndef _NGX_HTTP_USAGE_TAP_H_INCLUDED_
#define _NGX_HTTP_USAGE_TAP_H_INCLUDED_


#include <stdarg.h>
#include <stdio.h>


static unsigned  tap_count;
static unsigned  tap_failed;


/* inline: a test that never calls one of them is not warned about it */
static inline int tap_ok(int cond, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
static inline void tap_diag(const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));


static inline int
tap_ok(int cond, const char *fmt, ...)
{
    va_list  args;

    tap_count++;

    if (!cond) {
        tap_failed++;
    }

    printf("%sok %u - ", cond ? "" : "not ", tap_count);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
    fflush(stdout);

    return cond;
}


static inline void
tap_diag(const char *fmt, ...)
{
    va_list  args;

    printf("# ");

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
    fflush(stdout);
}


static inline int
tap_done(void)
{
    printf("1..%u\n", tap_count);

    return tap_failed ? 1 : 0;
}


#endif /* _NGX_HTTP_USAGE_TAP_H_INCLUDED_ */

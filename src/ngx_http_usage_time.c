
/*
 * Time as the API speaks it: milliseconds since the epoch, now, and
 * ISO-8601 written and parsed.  One concern: every conversion between
 * the clock, the store's integers and the text of a request or answer.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_usage_number.h"
#include "ngx_http_usage_time.h"


int64_t
ngx_http_usage_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


/* n in exactly width digits, zero-padded (n < 10^width) */

static u_char *
ngx_http_usage_digits_fixed(u_char *dst, ngx_uint_t n, ngx_uint_t width)
{
    u_char  *p;

    p = dst + width;

    while (p > dst) {
        *--p = (u_char) ('0' + n % 10);
        n /= 10;
    }

    return dst + width;
}


/* always 24 bytes: times outside years 1970..9999 are clamped */

u_char *
ngx_http_usage_iso_time(u_char *dst, int64_t ms)
{
    u_char      *p;
    time_t       sec, day;
    ngx_tm_t     tm;
    ngx_uint_t   i, t;

    /*
     * "YYYY-MM-DDT" of the last two days written: an answer's times are
     * mostly today's, and the zone's start or a history's points may be
     * another day's.  The time of day is arithmetic, whatever the second.
     * Workers are single-threaded, and the state file's thread writes no
     * times.
     */
    static time_t      cached_day[2] = { -1, -1 };
    static u_char      cached[2][sizeof("YYYY-MM-DDT") - 1];
    static ngx_uint_t  cached_next;

    if (ms < 0) {
        ms = 0;

    } else if (ms > NGX_HTTP_USAGE_TIME_MAX) {
        ms = NGX_HTTP_USAGE_TIME_MAX;
    }

    sec = (time_t) (ms / 1000);
    day = sec / 86400;

    if (day == cached_day[0]) {
        i = 0;

    } else if (day == cached_day[1]) {
        i = 1;

    } else {
        ngx_gmtime(sec, &tm);

        i = cached_next;
        cached_next ^= 1;

        p = ngx_http_usage_digits_fixed(cached[i], tm.ngx_tm_year, 4);
        *p++ = '-';
        p = ngx_http_usage_digits_fixed(p, tm.ngx_tm_mon, 2);
        *p++ = '-';
        p = ngx_http_usage_digits_fixed(p, tm.ngx_tm_mday, 2);
        *p = 'T';

        cached_day[i] = day;
    }

    dst = ngx_cpymem(dst, cached[i], sizeof(cached[0]));

    t = (ngx_uint_t) (sec - day * 86400);

    ngx_http_usage_two_digits(dst, t / 3600);
    *dst++ = ':';
    ngx_http_usage_two_digits(dst, t / 60 % 60);
    *dst++ = ':';
    ngx_http_usage_two_digits(dst, t % 60);
    *dst++ = '.';

    t = (ngx_uint_t) (ms % 1000);
    *dst++ = (u_char) ('0' + t / 100);
    ngx_http_usage_two_digits(dst, t % 100);
    *dst++ = 'Z';

    return dst;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static int64_t
ngx_http_usage_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t  era, yoe, doy, doe;    /* era, year/day of era, day of year */

    y -= (m <= 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static ngx_int_t
ngx_http_usage_digits(u_char **pp, u_char *end, ngx_uint_t n, int64_t *v)
{
    u_char  *p;

    p = *pp;

    if ((size_t) (end - p) < n) {
        return NGX_ERROR;
    }

    *v = 0;

    while (n--) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        *v = *v * 10 + (*p++ - '0');
    }

    *pp = p;

    return NGX_OK;
}


/*
 * ISO-8601 calendar dates and date-times: YYYY, YYYY-MM, YYYY-MM-DD,
 * YYYYMMDD, then optionally T (or a space) and hh, hh:mm, hh:mm:ss or the
 * basic hhmm, hhmmss, a fraction of a second, and Z or an offset
 * (+hh, +hh:mm, +hhmm).  A date or time without an offset is UTC.
 */

ngx_int_t
ngx_http_usage_parse_iso(u_char *s, size_t len, int64_t *ms)
{
    u_char      *p, *end;
    int64_t      year, mon, day, hour, min, sec, frac, off, oh, om, sign;
    int64_t      days_since_epoch;
    ngx_uint_t   n, extended;

    static const int  days[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                 31 };

    p = s;
    end = s + len;
    mon = 1;
    day = 1;
    hour = 0;
    min = 0;
    sec = 0;
    frac = 0;
    off = 0;

    if (ngx_http_usage_digits(&p, end, 4, &year) != NGX_OK) {
        return NGX_ERROR;
    }

    if (p < end && *p == '-') {
        p++;
        if (ngx_http_usage_digits(&p, end, 2, &mon) != NGX_OK) {
            return NGX_ERROR;
        }

        if (p < end && *p == '-') {
            p++;
            if (ngx_http_usage_digits(&p, end, 2, &day) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (p != end) {
            /* a time needs a full date */
            return NGX_ERROR;
        }

    } else if (p < end) {
        if (ngx_http_usage_digits(&p, end, 2, &mon) != NGX_OK
            || ngx_http_usage_digits(&p, end, 2, &day) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (mon < 1 || mon > 12 || day < 1 || day > days[mon - 1]) {
        return NGX_ERROR;
    }

    if (mon == 2 && day == 29
        && !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
    {
        return NGX_ERROR;
    }

    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ') {
            return NGX_ERROR;
        }

        p++;

        if (ngx_http_usage_digits(&p, end, 2, &hour) != NGX_OK) {
            return NGX_ERROR;
        }

        extended = (p < end && *p == ':');

        if (extended || (p < end && *p >= '0' && *p <= '9')) {
            p += extended;
            if (ngx_http_usage_digits(&p, end, 2, &min) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p < end && ((extended && *p == ':')
                            || (!extended && *p >= '0' && *p <= '9')))
            {
                p += extended;
                if (ngx_http_usage_digits(&p, end, 2, &sec) != NGX_OK) {
                    return NGX_ERROR;
                }

                if (p < end && (*p == '.' || *p == ',')) {
                    p++;

                    /* milliseconds; further digits are truncated, as JS */
                    for (n = 0; p < end && *p >= '0' && *p <= '9'; n++, p++) {
                        if (n < 3) {
                            frac = frac * 10 + (*p - '0');
                        }
                    }

                    if (n == 0) {
                        return NGX_ERROR;
                    }

                    for ( /* void */ ; n < 3; n++) {
                        frac *= 10;
                    }
                }
            }
        }

        if (hour > 23 || min > 59 || sec > 59) {
            return NGX_ERROR;
        }

        if (p < end && (*p == 'Z' || *p == 'z')) {
            p++;

        } else if (p < end && (*p == '+' || *p == '-')) {
            sign = (*p++ == '-') ? -1 : 1;
            om = 0;

            if (ngx_http_usage_digits(&p, end, 2, &oh) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p < end) {
                p += (*p == ':');
                if (ngx_http_usage_digits(&p, end, 2, &om) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            if (oh > 23 || om > 59) {
                return NGX_ERROR;
            }

            off = sign * (oh * 3600000 + om * 60000);
        }

        if (p != end) {
            return NGX_ERROR;
        }
    }

    days_since_epoch = ngx_http_usage_days_from_civil(year, mon, day);

    *ms = days_since_epoch * 86400000 + hour * 3600000 + min * 60000
          + sec * 1000 + frac - off;

    return NGX_OK;
}

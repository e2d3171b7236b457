#!/usr/bin/perl

# usage_metrics: the Prometheus text exposition (0.0.4) of a zone.
#   - GET and HEAD: 200, text/plain; version=0.0.4; charset=utf-8; every
#     metric has # HELP and # TYPE; promtool check metrics accepts it;
#     other methods: the JSON 405 envelope with Allow: GET, HEAD; every
#     answer carries x-trace-id, the 405's equal to its body's traceId;
#   - the store's figures equal /v1/usage/stats' store object; the
#     instance's (usage_build_info, stub_status's connection figures as
#     nginx_connections_* and nginx_http_requests_total) have no zone label;
#   - tracked traffic: after N tracked requests, usage_http_requests_total
#     (by method, status class) and the duration histogram's count grow by
#     N, a 404 counts as 4xx, an unknown method as OTHER, /health and /ready
#     are not counted, a request of 300 ms lands above le="0.25"; buckets
#     are cumulative, +Inf equals _count, _count equals the sum of
#     requests_total; another zone's counters do not move;
#   - a reload keeps the counters; usage_metrics with usage_api in one
#     location is refused.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until $UUID4_RE);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_file('a.txt', "hello\n");
$t->write_config(<<'EOF')->run();
http {
    usage_zone zone=usage:1m;
    usage_zone zone=other:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;
        usage_track usage;

        location / { usage_api usage; }
        location /static/ { alias %%TESTDIR%%/; }
        location = /metrics {
            usage_metrics usage;
            usage_track off;
        }
        location = /metrics/other {
            usage_metrics other;
            usage_track off;
        }
        location /o/ {
            usage_track other;
            return 204;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name untracked;
        location / { usage_api usage; }
    }
}
EOF

# the version of the nginx under test, as "nginx -v" says it
sub nginx_version {
	my $out = `$t->{nginx} -v 2>&1`;
	return $out =~ m{nginx/(\S+)} ? $1 : 'unknown';
}

# { name => { 'label="v",...' => value } }, and the HELP/TYPE lines seen
sub scrape {
	my ($path) = @_;
	my $r = $t->get($path // '/metrics');
	my (%v, %help, %type);
	for my $line (split /\n/, $r->body) {
		if ($line =~ /^# HELP (\S+) /) { $help{$1} = 1; next }
		if ($line =~ /^# TYPE (\S+) (\S+)/) { $type{$1} = $2; next }
		next unless $line =~ /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/;
		$v{$1}{ $2 // '' } = $3;
	}
	return { r => $r, v => \%v, help => \%help, type => \%type };
}

sub req_total {
	my ($m, $method, $status) = @_;
	return $m->{v}{usage_http_requests_total}
		{"zone=\"usage\",method=\"$method\",status=\"$status\""} // 0;
}

sub sum_requests {
	my ($m, $zone) = @_;
	my $h = $m->{v}{usage_http_requests_total} || {};
	my $sum = 0;
	$sum += $h->{$_} for grep { /^zone="\Q$zone\E"/ } keys %$h;
	return $sum;
}

sub hist {
	my ($m, $what, $le) = @_;
	my $key = 'zone="usage"' . (defined $le ? ",le=\"$le\"" : '');
	return $m->{v}{"usage_http_request_duration_seconds_$what"}{$key} // 0;
}

my @LE = qw(0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf);

###############################################################################
# the exposition

my $m = scrape();
my $r = $m->{r};
is($r->status, 200, 'GET /metrics 200');
is($r->header('Content-Type'), 'text/plain; version=0.0.4; charset=utf-8',
	'exposition content type');
like($r->body, qr/\n\z/, 'ends with a newline');

my @names = sort keys %{ $m->{v} };
my %family = map { my $n = $_; $n =~ s/_(?:bucket|sum|count)$//
	if $n =~ /^usage_http_request_duration_seconds_/; $n => 1 } @names;
my @missing = grep { !$m->{help}{$_} || !$m->{type}{$_} } sort keys %family;
is("@missing", '', 'every metric has # HELP and # TYPE');
# the instance's own figures: the versions, and stub_status's connections
my @INSTANCE = qw(usage_build_info nginx_connections_active
	nginx_connections_reading nginx_connections_writing
	nginx_connections_waiting nginx_connections_accepted_total
	nginx_connections_handled_total nginx_http_requests_total);
my %instance = map { $_ => 1 } @INSTANCE;
ok(!(grep { !/^usage_/ && !$instance{$_} } @names),
	'every name starts with usage_, but the instance\'s nginx_ ones');
my @unlabelled = grep { my $n = $_; !$instance{$n} && grep {
	!/^zone="usage"/ } keys %{ $m->{v}{$n} } } @names;
is("@unlabelled", '', 'every zone sample has zone="usage" first');

is_deeply([sort grep { $instance{$_} } @names], [sort @INSTANCE],
	'the instance metrics are all there');
is_deeply($m->{v}{usage_build_info},
	{ 'version="0.1.0",nginx_version="' . nginx_version() . '"' => 1 },
	'build info: the module\'s and nginx\'s versions, no zone');
for my $n (grep { /^nginx_/ } @INSTANCE) {
	is_deeply([keys %{ $m->{v}{$n} }], [''], "$n: no labels");
	is($m->{type}{$n}, $n =~ /_total$/ ? 'counter' : 'gauge', "$n: type");
}
cmp_ok($m->{v}{nginx_connections_active}{''}, '>=', 1,
	'active connections: this one at least');
cmp_ok($m->{v}{nginx_connections_writing}{''}, '>=', 1,
	'writing: this answer at least');
cmp_ok($m->{v}{nginx_connections_handled_total}{''}, '<=',
	$m->{v}{nginx_connections_accepted_total}{''}, 'handled <= accepted');
{
	my $before = $m->{v}{nginx_http_requests_total}{''};
	$t->get('/v1/usage/x') for 1 .. 3;
	my $after = scrape()->{v}{nginx_http_requests_total}{''};
	cmp_ok($after - $before, '>=', 4, 'nginx_http_requests_total counts '
		. 'every request, the scrapes too');
}

for my $n (qw(usage_events usage_events_stored usage_events_recorded_total
	usage_events_evicted_total usage_events_expired_total
	usage_events_dropped_total usage_events_duplicates_total
	usage_buckets usage_entities usage_event_types usage_raw_log_bytes
	usage_zone_used_bytes usage_zone_free_bytes usage_state_saves_total))
{
	ok(exists $m->{v}{$n}{'zone="usage"'}, "$n exposed");
}
is($m->{type}{usage_http_requests_total}, 'counter', 'requests: counter');
is($m->{type}{usage_http_request_duration_seconds}, 'histogram',
	'duration: histogram');
is($m->{type}{usage_events_stored}, 'gauge', 'events stored: gauge');
is(scalar(keys %{ $m->{v}{usage_http_requests_total} }), 40,
	'requests: 8 methods x 5 status classes');
is_deeply([map { exists $m->{v}{usage_http_request_duration_seconds_bucket}
	{"zone=\"usage\",le=\"$_\""} ? 1 : 0 } @LE], [(1) x @LE],
	'the histogram buckets');

$t->promtool_check($r->body);

my $h = $t->head('/metrics');
is($h->status, 200, 'HEAD /metrics 200');
is($h->body, '', 'HEAD: no body');
is($h->header('Content-Type'), 'text/plain; version=0.0.4; charset=utf-8',
	'HEAD: content type');
like($r->trace_id // '', $UUID4_RE, 'GET /metrics: x-trace-id');
like($h->trace_id // '', $UUID4_RE, 'HEAD /metrics: x-trace-id');
is($t->get('/metrics', headers => ['X-Trace-Id' => 'm-get'])->trace_id,
	'm-get', 'GET /metrics: the x-trace-id sent');

for my $method (qw(POST DELETE OPTIONS)) {
	my $e = $t->request($method, '/metrics', headers => ['X-Trace-Id' => "m-$method"]);
	is($e->status, 405, "$method /metrics 405");
	is($e->header('Allow'), 'GET, HEAD', "$method: Allow");
	is($e->header('Content-Type'), 'application/json; charset=utf-8',
		"$method: JSON");
	is($e->err->{code}, 'METHOD_NOT_ALLOWED', "$method: code");
	like($e->err->{message} // '', qr{^Method $method is not allowed on /metrics},
		"$method: message");
	is($e->err->{traceId}, "m-$method", "$method: traceId");
	is($e->trace_id, "m-$method", "$method: x-trace-id");
}

my $e = $t->request('POST', '/metrics', body => '{}',
	headers => ['Content-Type' => 'application/json']);
is($e->status, 405, 'POST /metrics without a trace id: 405');
like($e->trace_id // '', $UUID4_RE, 'a generated x-trace-id');
is($e->err->{traceId}, $e->trace_id, 'the body\'s traceId is the header\'s');
is(scalar($e->headers('x-trace-id')), 1, 'one x-trace-id header');

###############################################################################
# the store's figures are /v1/usage/stats' (read through an untracked
# server, nothing moves in between)

$t->post_event("e$_", 'call') for 1 .. 3;
wait_until { scrape()->{v}{usage_events_recorded_total}{'zone="usage"'} >= 3 };
my $st = $t->get('/v1/usage/stats', port => $t->{port2})->data;
$m = scrape();
my %same = (usage_events => $st->{totalEvents},
	usage_events_stored => $st->{store}{events},
	usage_events_recorded_total => $st->{store}{recorded},
	usage_events_evicted_total => $st->{store}{evictions},
	usage_events_dropped_total => $st->{store}{drops},
	usage_entities => $st->{uniqueEntities},
	usage_event_types => scalar(keys %{ $st->{eventTypes} }),
	usage_buckets => $st->{store}{buckets},
	usage_raw_log_bytes => $st->{store}{rawBytes},
	usage_raw_log_used_bytes => $st->{store}{rawBytesUsed},
	usage_zone_used_bytes => $st->{store}{zoneBytesUsed},
	usage_zone_free_bytes => $st->{store}{zoneBytesFree});
for my $n (sort keys %same) {
	is($m->{v}{$n}{'zone="usage"'}, $same{$n}, "$n is the stats' figure");
}
ok($m->{v}{usage_start_time_seconds}{'zone="usage"'} > 1.7e9,
	'start time in seconds');

###############################################################################
# tracked traffic

my $m0 = scrape();
my $o0 = scrape('/metrics/other');

my @codes;
push @codes, $t->get('/static/a.txt')->status for 1 .. 3;
push @codes, $t->get('/static/missing')->status for 1 .. 2;
push @codes, $t->post_event('cust', 'x')->status;
push @codes, $t->head('/v1/events')->status;
push @codes, $t->request('PUT', '/v1/events')->status;
push @codes, $t->request('PROPFIND', '/v1/events')->status;
push @codes, $t->options('/v1/events')->status;
push @codes, $t->request('DELETE', '/v1/events')->status;
my $n = @codes;
is("@codes", '200 200 200 404 404 201 200 405 405 204 405', 'the requests');

# probes are not tracked
$t->get('/health') for 1 .. 3;
$t->get('/ready') for 1 .. 2;

# one request of at least 300 ms: its body comes late
my $body = '{"entityId":"slow","eventType":"x"}';
my $c = $t->connect();
$c->send_raw("POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "Content-Type: application/json\r\nContent-Length: "
	. length($body) . "\r\nConnection: close\r\n\r\n");
sleep 0.35;
$c->send_raw($body);
my $slow = $c->read_response('POST');
$c->close();
is($slow->status, 201, 'the slow request') or diag $slow->describe;
$n++;

my $m1 = wait_until {
	my $x = scrape();
	hist($x, 'count') >= hist($m0, 'count') + $n ? $x : undef;
} 5;
$m1 //= scrape();

my %delta = (
	'GET 2xx' => 3, 'GET 4xx' => 2, 'POST 2xx' => 2, 'HEAD 2xx' => 1,
	'PUT 4xx' => 1, 'OTHER 4xx' => 1, 'OPTIONS 2xx' => 1, 'DELETE 4xx' => 1,
	'GET 5xx' => 0, 'POST 4xx' => 0, 'PATCH 2xx' => 0,
);
for my $k (sort keys %delta) {
	my ($method, $class) = split / /, $k;
	is(req_total($m1, $method, $class) - req_total($m0, $method, $class),
		$delta{$k}, "requests_total{method=\"$method\",status=\"$class\"} +$delta{$k}");
}
is(sum_requests($m1, 'usage') - sum_requests($m0, 'usage'), $n,
	"requests_total grows by $n (probes not counted)");
is(hist($m1, 'count') - hist($m0, 'count'), $n, "histogram count +$n");
is(hist($m1, 'count'), sum_requests($m1, 'usage'),
	'_count equals the sum of requests_total');
is(hist($m1, 'bucket', '+Inf'), hist($m1, 'count'), '+Inf equals _count');
my @cum = map { hist($m1, 'bucket', $_) } @LE;
ok(!(grep { $cum[$_] < $cum[$_ - 1] } 1 .. $#cum), 'buckets are cumulative')
	or diag "@cum";
# (the others are quick, but a loaded machine may slow one of them)
my $under = hist($m1, 'bucket', '0.25') - hist($m0, 'bucket', '0.25');
ok($under <= $n - 1 && $under >= $n - 3,
	"the slow request is above le=\"0.25\" ($under of $n under it)");
is(hist($m1, 'bucket', '2.5') - hist($m0, 'bucket', '2.5'), $n,
	'all within le="2.5"');
my $sum = hist($m1, 'sum') - hist($m0, 'sum');
ok($sum >= 0.3 && $sum < 5, "duration sum grew by at least 0.3 s ($sum)");
like($m1->{r}->body,
	qr/^usage_http_request_duration_seconds_sum\{zone="usage"\} \d+(?:\.\d{1,3})?$/m,
	'sum in seconds, to the millisecond');

my $o1 = scrape('/metrics/other');
is(sum_requests($o1, 'other'), sum_requests($o0, 'other'),
	'the other zone did not move');
is($t->get('/o/x')->status, 204, 'a request tracked into the other zone');
$o1 = wait_until {
	my $x = scrape('/metrics/other');
	sum_requests($x, 'other') > sum_requests($o0, 'other') ? $x : undef
} 5;
is($o1 && $o1->{v}{usage_http_requests_total}
	{'zone="other",method="GET",status="2xx"'}, 1, 'counted in its zone');
is(sum_requests(scrape(), 'usage'), sum_requests($m1, 'usage'),
	'and not in this one');

###############################################################################
# a reload keeps the counters (same zone)

my $before = scrape();
ok($t->reload(), 'reloaded');
my $after = scrape();
is(sum_requests($after, 'usage'), sum_requests($before, 'usage'),
	'requests_total kept across a reload');
is(hist($after, 'count'), hist($before, 'count'), 'histogram kept');
is(hist($after, 'sum'), hist($before, 'sum'), 'histogram sum kept');

###############################################################################
# configuration

my ($code, $out) = $t->check_config(<<'EOF');
http {
    usage_zone zone=usage:1m;
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { usage_api usage; usage_metrics usage; }
    }
}
EOF
isnt($code, 0, 'usage_metrics with usage_api: refused');
like($out, qr/\[emerg\].*"usage_metrics" directive cannot be used in a location with "usage_api"/,
	'usage_metrics with usage_api: message') or diag $out;

($code, $out) = $t->check_config(<<'EOF');
http {
    usage_zone zone=usage:1m;
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { usage_metrics nozone; }
    }
}
EOF
like($out, qr/\[emerg\].*usage zone "nozone" is unknown/,
	'usage_metrics: an unknown zone is refused') or diag $out;

$t->done_testing();

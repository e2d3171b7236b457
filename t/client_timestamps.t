#!/usr/bin/perl

# The client's event time ("timestamp"): echoed as ISO with ms while
# createdAt stays the receipt; since/until, history buckets and retention use
# the event time, the list keeps its createdAt order; 400 for an invalid
# date, a time older than the retention window, more than 5 minutes in the
# future; with retention=3s an event whose own time left the window is no
# longer counted while one received at the same moment still is.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms parse_iso $ISO_RE);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m retention=1h;'))
	->run();

sub now_ms { int(time() * 1000) }

sub post {
	my ($entity, $ts, %more) = @_;
	my %ev = (entityId => $entity, eventType => $more{type} // 'x', %more);
	delete $ev{type};
	$ev{timestamp} = $ts if defined $ts;
	return $t->post_json('/v1/events', \%ev);
}

sub minute { int($_[0] / 60000) * 60000 }

###############################################################################
# the echo

my $now = now_ms();
my $ts = $now - 10 * 60000;
$ts = $ts - $ts % 1000 + 123;    # a known millisecond part

my $r = post('echo', iso_ms($ts));
my $after = now_ms();
is($r->status, 201, 'timestamp 10 minutes ago: 201') or diag $r->describe;
my $ev = $r->data;
is($ev->{timestamp}, iso_ms($ts), 'timestamp echoes the event time, ms');
like($ev->{timestamp}, $ISO_RE, 'as ISO with ms and Z');
ok($ev->{createdAt} >= $now - 5 && $ev->{createdAt} <= $after + 5,
	'createdAt is the receipt');

# other ISO forms are normalized
my ($y, $mo, $d, $h, $mi, $s) = (gmtime(int($ts / 1000)))[5, 4, 3, 2, 1, 0];
my $plain = sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ', $y + 1900, $mo + 1, $d,
	$h, $mi, $s);
$r = post('echo', $plain);
is($r->status, 201, "no milliseconds ($plain): 201");
is($r->data->{timestamp}, iso_ms($ts - 123), 'echoed with .000');

# the same instant at +05:30
my @l = gmtime(int($ts / 1000) + 5 * 3600 + 30 * 60);
my $offset = sprintf('%04d-%02d-%02dT%02d:%02d:%02d.123+05:30',
	$l[5] + 1900, $l[4] + 1, @l[3, 2, 1, 0]);
$r = post('echo', $offset);
is($r->status, 201, "offset form ($offset): 201");
is($r->data->{timestamp}, iso_ms($ts), 'echoed in UTC');

# the list: its order is by receipt (createdAt), whatever the event time
my @order;
for my $ago (1, 10, 5) {
	my $r = post('order', iso_ms(now_ms() - $ago * 60000));
	push @order, $r->data->{id};
	sleep 0.003;
}
$r = $t->get('/v1/events?entityId=order');
is_deeply([map { $_->{id} } @{ $r->data->{events} }], [reverse @order],
	'listed newest first by createdAt, not by timestamp');

###############################################################################
# since, until and history by event time

$now = now_ms();
my %at = map { $_ => $now - $_ * 60000 } 10, 5, 1;
post('when', iso_ms($at{$_}), type => "m$_") for 10, 5, 1;

my $u = $t->get('/v1/usage/when?since=' . iso_ms($now - 6 * 60000))->data;
is($u->{totalEvents}, 2, 'since 6 minutes ago: 2');
is_deeply($u->{byEventType}, { m5 => 1, m1 => 1 }, 'since: the two newer');
is($u->{resolution}, 'exact', 'since: exact');

$u = $t->get('/v1/usage/when?until=' . iso_ms($now - 3 * 60000))->data;
is($u->{totalEvents}, 2, 'until 3 minutes ago: 2');
is_deeply($u->{byEventType}, { m10 => 1, m5 => 1 }, 'until: the two older');

$u = $t->get('/v1/usage/when?since=' . iso_ms($at{5}) . '&until='
	. iso_ms($at{5}))->data;
is($u->{totalEvents}, 1, 'since = until = its time: 1 (inclusive)');
$u = $t->get('/v1/usage/when?since=' . iso_ms($at{5} + 1) . '&until='
	. iso_ms($at{1} - 1))->data;
is($u->{totalEvents}, 0, 'a millisecond after, until one before the next: 0');

$u = $t->get('/v1/usage/when?since=' . iso_ms($now - 2000))->data;
is($u->{totalEvents}, 0, 'none by receipt time: the event time counts');

my $hd = $t->get('/v1/usage/when/history?interval=minute')->data;
is_deeply($hd->{dataPoints}, [map { { timestamp => iso_ms(minute($at{$_})),
	count => 1, value => 1 } } 10, 5, 1],
	'history: each event in its own minute');
is($hd->{resolution}, 'exact', 'history: exact');

$hd = $t->get('/v1/usage/when/history?interval=minute&since='
	. iso_ms($now - 6 * 60000))->data;
is_deeply([map { $_->{timestamp} } @{ $hd->{dataPoints} }],
	[map { iso_ms(minute($at{$_})) } 5, 1], 'history with since');

###############################################################################
# 400s

my $T_ISO = 'timestamp must be a valid ISO8601 date';
my $T_OLD = 'timestamp must be within the retention window';
my $T_FUT = 'timestamp must not be more than 5 minutes in the future';

sub invalid {
	my ($ts, $message, $name, %more) = @_;
	my $r = $t->post_json('/v1/events', { entityId => 'bad',
		eventType => 'x', timestamp => $ts, %more },
		headers => ['X-Trace-Id' => 'ts-trace']);
	is($r->status, 400, "$name: 400") or diag $r->describe;
	is($r->err->{code}, 'VALIDATION_ERROR', "$name: code");
	is($r->err->{message}, $message, "$name: message");
	is($r->err->{traceId}, 'ts-trace', "$name: traceId");
}

for my $v ('yesterday', '', '2026-13-01T00:00:00Z', '2026-11-21T25:00:00Z',
	'21/11/2026', 'T04:00:00Z', 12345,
	JSON::PP::true, [], {})
{
	my $n = ref $v eq 'ARRAY' ? '[]' : ref $v eq 'HASH' ? '{}' : "'$v'";
	invalid($v, $T_ISO, "timestamp $n");
}

$now = now_ms();
invalid(iso_ms($now - 2 * 3600000), $T_OLD, 'two hours ago (retention 1h)');
invalid(iso_ms($now - 3600000 - 60000), $T_OLD, '1h01m ago');
invalid('2001-01-01T00:00:00Z', $T_OLD, 'in 2001');
invalid(iso_ms($now + 10 * 60000), $T_FUT, '10 minutes ahead');
invalid(iso_ms($now + 5 * 60000 + 30000), $T_FUT, '5m30s ahead');
invalid('2099-01-01', $T_FUT, 'in 2099');

invalid('nope', "entityId is required, $T_ISO", 'with another error',
	entityId => ' ');
invalid(iso_ms($now + 10 * 60000),
	"id must be 1 to 128 characters, value must be a finite number, $T_FUT",
	'after the id and value rules', id => '', value => 'x');

is($t->get('/v1/usage/bad')->data->{totalEvents}, 0, 'nothing stored');

# the accepted edges
$r = post('edge', iso_ms(now_ms() + 4 * 60000));
is($r->status, 201, '4 minutes ahead: 201') or diag $r->describe;
$r = post('edge', iso_ms(now_ms() - 3600000 + 60000));
is($r->status, 201, '59 minutes ago: 201') or diag $r->describe;
$r = post('edge', undef, timestamp => undef);
is($r->status, 201, 'timestamp null: 201');
ok(abs(parse_iso($r->data->{timestamp}) - $r->data->{createdAt}) == 0,
	'timestamp null: the receipt time');

$u = $t->get('/v1/usage/edge')->data;
is($u->{totalEvents}, 3, 'edges counted');
is($t->get('/v1/usage/edge?until=' . iso_ms(now_ms()))->data->{totalEvents},
	2, 'the future event is after until=now');

$t->finish();

###############################################################################
# retention by event time

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m retention=3s;'))
	->run();

# an event with an old time received first, a current one; then an event
# with an old time received after a current one (the raw log is in order of
# receipt: it must leave the window by its own time all the same)
my $start = time();
is(post('idlate', iso_ms(now_ms() - 2000), id => 'R')->status, 201,
	'event 2 s old with a client id');
is(post('late1', iso_ms(now_ms() - 2000))->status, 201,
	'event 2 s old, received first');
is(post('fresh1', undef)->status, 201, 'current event');
is(post('late2', iso_ms(now_ms() - 2000))->status, 201,
	'event 2 s old, received after a current one');
is(post('fresh2', undef)->status, 201, 'current event');

is($t->get('/v1/usage/late1')->data->{totalEvents}, 1, 'late1 counted');
is($t->get('/v1/usage/late2')->data->{totalEvents}, 1, 'late2 counted');

invalid(iso_ms(now_ms() - 4000), $T_OLD, '4 s old (retention 3s)');
is(post('idlate', undef, id => 'R')->status, 200,
	'its id repeated inside the window: 200');

sleep(1.5 - (time() - $start)) if time() - $start < 1.5;

for my $e (qw(late1 late2)) {
	my $u = $t->get("/v1/usage/$e")->data;
	is($u->{totalEvents}, 0, "$e: its time left the window: 0");
	is_deeply($t->get("/v1/usage/$e/history?interval=minute")
		->data->{dataPoints}, [], "$e: not in the history");
	is($t->get("/v1/events?entityId=$e")->data->{pagination}{total}, 0,
		"$e: not listed");
}
for my $e (qw(fresh1 fresh2)) {
	is($t->get("/v1/usage/$e")->data->{totalEvents}, 1,
		"$e: received at the same moment, still counted");
}

# the id's event left the window by its own time: the id is free again
$r = post('idlate', undef, id => 'R');
is($r->status, 201, 'its id after its event time left the window: 201');
is($t->get('/v1/usage/idlate')->data->{totalEvents}, 1, 'counted anew');
$r = post('idlate', undef, id => 'R');
is($r->status, 200, 'and repeated: 200');

my $st = $t->get('/v1/usage/stats')->data;
is($st->{totalEvents}, 3, 'stats: only the fresh events');
is($st->{eventsLastHour}, 3, 'stats: eventsLastHour');
is_deeply($st->{eventTypes}, { x => 3 }, 'stats: eventTypes');

$t->done_testing();

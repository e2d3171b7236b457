#!/usr/bin/perl

# Totals that never drop: with max_events=5, 50 events keep exact summaries,
# histories and stats while the raw log holds 5.  The resolution flag: a
# since/until that cuts a minute bucket is exact while the log holds all of
# the bucket's events, and counts the whole bucket ("minute") once it does
# not; bounds on minute boundaries stay exact.  Events older than the minute
# span (minutes=1m) are in hour buckets: a minute history shows them as one
# point at the hour ("hour").  The store keys of /v1/usage/stats.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms $ISO_RE);
use Time::HiRes qw(sleep time);

sub now_ms { int(time() * 1000) }
sub floor_to { int($_[0] / $_[1]) * $_[1] }

my $MINUTE = 60000;
my $HOUR = 3600000;

# dataPoints expected from [time, value] pairs
sub points {
	my ($size, @ev) = @_;
	my (%n, %v);
	for (@ev) {
		my $b = floor_to($_->[0], $size);
		$n{$b}++;
		$v{$b} += $_->[1];
	}
	return [map { { timestamp => iso_ms($_), count => $n{$_},
		value => $v{$_} } } sort { $a <=> $b } keys %n];
}

###############################################################################
# 50 events through a log of 5

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=5;'))
	->run();

my (%events, %types, %typeval);
my $failed = 0;
for my $i (1 .. 50) {
	my $e = ('e1', 'e1', 'e2', 'e2', 'e3')[$i % 5];
	my $type = $i % 2 ? 'odd' : 'even';
	my $r = $t->post_json('/v1/events',
		{ entityId => $e, eventType => $type, value => $i });
	$failed++ unless $r->status == 201;
	push @{ $events{$e} }, [$r->data->{createdAt}, $i];
	$types{$e}{$type}++;
	$typeval{$e}{$type} += $i;
}

is($failed, 0, 'fifty events: 201');

my %want = (e1 => 20, e2 => 20, e3 => 10);
for my $e (sort keys %want) {
	my $r = $t->get("/v1/usage/$e");
	is($r->status, 200, "$e: 200");
	my $u = $r->data;
	is($u->{totalEvents}, $want{$e}, "$e: totalEvents exact");
	is_deeply($u->{byEventType}, $types{$e}, "$e: byEventType exact");
	is_deeply($u->{valueByEventType}, $typeval{$e}, "$e: valueByEventType");
	my $sum = 0;
	$sum += $_->[1] for @{ $events{$e} };
	is($u->{totalValue}, $sum, "$e: totalValue");
	is($u->{resolution}, 'exact', "$e: resolution exact (whole buckets)");

	for my $iv ([minute => $MINUTE], [hour => $HOUR]) {
		my $h = $t->get("/v1/usage/$e/history?interval=$iv->[0]")->data;
		is_deeply($h->{dataPoints}, points($iv->[1], @{ $events{$e} }),
			"$e: $iv->[0] history exact");
		is($h->{resolution}, 'exact', "$e: $iv->[0] history resolution");
	}
}

my $st = $t->get('/v1/usage/stats')->data;
is($st->{totalEvents}, 50, 'stats: totalEvents 50');
is($st->{eventsLastHour}, 50, 'stats: eventsLastHour 50');
is($st->{uniqueEntities}, 3, 'stats: uniqueEntities');
is_deeply($st->{eventTypes}, { odd => 25, even => 25 }, 'stats: eventTypes');
is($st->{store}{events}, 5, 'store.events 5');
is($st->{store}{evictions}, 45, 'store.evictions 45');
is($st->{store}{recorded}, 50, 'store.recorded 50');
is($st->{store}{maxEvents}, 5, 'store.maxEvents');
is($t->get('/v1/events?limit=1000')->data->{pagination}{total}, 5,
	'the list holds 5');
is($t->get('/info')->json->{stats}{totalEvents}, 50, 'info: totalEvents');

$t->finish();

###############################################################################
# the resolution of a bound inside a minute

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=5;'))
	->run();

# the previous minute, fully elapsed: every time in it is in the past
my $M = floor_to(now_ms(), $MINUTE) - $MINUTE;
my %at = (10 => $M + 10000, 20 => $M + 20000, 40 => $M + 40000);

for my $s (10, 20, 40) {
	my $r = $t->post_json('/v1/events', { entityId => 'edge',
		eventType => 'hit', value => $s, timestamp => iso_ms($at{$s}) });
	is($r->status, 201, "event at :$s") or diag $r->describe;
}

sub range {
	my ($q, $path) = @_;
	$path //= '';
	my @q = map { "$_=" . iso_ms($q->{$_}) } sort keys %$q;
	push @q, 'interval=minute' if $path;
	my $r = $t->get("/v1/usage/edge$path?" . join '&', @q);
	is($r->status, 200, "range $path: 200") or diag $r->describe;
	return $r->data;
}

my $cut = { since => $M + 30000 };
my $u = range($cut);
is($u->{totalEvents}, 1, 'since :30 with all raw events: 1');
is($u->{totalValue}, 40, 'its value');
is($u->{resolution}, 'exact', 'resolution exact');

$u = range({ until => $M + 30000 });
is($u->{totalEvents}, 2, 'until :30: 2');
is($u->{resolution}, 'exact', 'until: exact');

$u = range({ since => $M + 15000, until => $M + 25000 });
is($u->{totalEvents}, 1, ':15 to :25: 1');
is($u->{resolution}, 'exact', ':15 to :25: exact');

$u = range({ since => $at{20}, until => $at{40} });
is($u->{totalEvents}, 2, 'bounds on the events: inclusive');

my $h = range($cut, '/history');
is_deeply($h->{dataPoints},
	[{ timestamp => iso_ms($M), count => 1, value => 40 }],
	'history since :30: one event');
is($h->{resolution}, 'exact', 'history: exact');

# evict one of the three raw events: the bucket is no longer complete
for my $i (1 .. 3) {
	$t->post_json('/v1/events', { entityId => 'filler', eventType => 'f' });
}
is($t->get('/v1/events?entityId=edge')->data->{pagination}{total}, 2,
	'two of the three raw events left');

$u = range($cut);
is($u->{totalEvents}, 3, 'since :30, one raw event evicted: the whole minute');
is($u->{totalValue}, 70, 'the whole minute\'s value');
is($u->{resolution}, 'minute', 'resolution minute');

# evict them all
for my $i (1 .. 5) {
	$t->post_json('/v1/events', { entityId => 'filler', eventType => 'f' });
}
is($t->get('/v1/events?entityId=edge')->data->{pagination}{total}, 0,
	'no raw event of edge left');

$u = range($cut);
is($u->{totalEvents}, 3, 'since :30 after eviction: 3');
is_deeply($u->{byEventType}, { hit => 3 }, 'byEventType: the whole minute');
is($u->{resolution}, 'minute', 'resolution minute');

$u = range({ until => $M + 30000 });
is($u->{totalEvents}, 3, 'until :30 after eviction: 3');
is($u->{resolution}, 'minute', 'until: minute');

$h = range($cut, '/history');
is_deeply($h->{dataPoints},
	[{ timestamp => iso_ms($M), count => 3, value => 70 }],
	'history since :30 after eviction: the whole minute');
is($h->{resolution}, 'minute', 'history: minute');

# bounds on minute boundaries cut no bucket
for my $q ([{ since => $M }, 'since on the minute'],
	[{ since => $M, until => $M + $MINUTE - 1 }, 'the minute exactly'],
	[{ until => $M + $MINUTE - 1 }, 'until its last ms'],
	[{}, 'no bounds'])
{
	$u = range($q->[0]);
	is($u->{totalEvents}, 3, "$q->[1]: 3");
	is($u->{resolution}, 'exact', "$q->[1]: exact");
}
for my $q ([{ since => $M + $MINUTE }, 'since the next minute'],
	[{ until => $M - 1 }, 'until the minute before'])
{
	$u = range($q->[0]);
	is($u->{totalEvents}, 0, "$q->[1]: 0");
	is($u->{resolution}, 'exact', "$q->[1]: exact");
}
$h = $t->get('/v1/usage/edge/history?interval=minute&since=' . iso_ms($M))
	->data;
is_deeply($h->{dataPoints},
	[{ timestamp => iso_ms($M), count => 3, value => 70 }],
	'minute history since the minute: whole');
is($h->{resolution}, 'exact', 'and exact');

is($t->get('/v1/usage/stats')->data->{totalEvents}, 11,
	'stats: every event counted');

$t->finish();

###############################################################################
# hour buckets past the minute span

$t = Test::Usage->new();
$t->write_config(api_conf(zone =>
	'usage_zone zone=usage:1m minutes=1m max_events=5;'))->run();

# two events 30 minutes ago, in one hour
my $now = now_ms();
my $base = $now - 30 * $MINUTE;
$base -= 2000 if $base % $HOUR > $HOUR - 2000;
my @old = ($base, $base + 1000);
my $H = floor_to($old[0], $HOUR);

for my $ts (@old) {
	my $r = $t->post_json('/v1/events', { entityId => 'span',
		eventType => 'old', timestamp => iso_ms($ts) });
	is($r->status, 201, '30 minutes ago: 201') or diag $r->describe;
}
my $r = $t->post_json('/v1/events', { entityId => 'span', eventType => 'new' });
my $created = $r->data->{createdAt};

$h = $t->get('/v1/usage/span/history?interval=minute')->data;
is_deeply($h->{dataPoints}, [
	{ timestamp => iso_ms($H), count => 2, value => 2 },
	{ timestamp => iso_ms(floor_to($created, $MINUTE)), count => 1,
		value => 1 },
], 'minute history: the old events as one point at their hour');
is($h->{resolution}, 'hour', 'minute history over an hour bucket: hour');

$h = $t->get('/v1/usage/span/history?interval=hour')->data;
is_deeply($h->{dataPoints}, points($HOUR, [$old[0], 1], [$old[1], 1],
	[$created, 1]), 'hour history');
is($h->{resolution}, 'exact', 'hour history: exact');

$h = $t->get('/v1/usage/span/history?interval=day')->data;
is_deeply($h->{dataPoints}, points(86400000, [$old[0], 1], [$old[1], 1],
	[$created, 1]), 'day history');
is($h->{resolution}, 'exact', 'day history: exact');

$u = $t->get('/v1/usage/span')->data;
is($u->{totalEvents}, 3, 'summary: 3');
is_deeply($u->{byEventType}, { old => 2, new => 1 }, 'summary: by type');
is($u->{resolution}, 'exact', 'summary: exact');

# a since inside the hour bucket: exact from the raw events, then the hour
my $since = iso_ms($old[0] + 500);
$u = $t->get("/v1/usage/span?since=$since")->data;
is($u->{totalEvents}, 2, 'since inside the hour, raw events kept: 2');
is_deeply($u->{byEventType}, { old => 1, new => 1 }, 'by type');
is($u->{resolution}, 'exact', 'exact');

for my $i (1 .. 5) {
	$t->post_json('/v1/events', { entityId => 'filler', eventType => 'f' });
}
is($t->get('/v1/events?entityId=span')->data->{pagination}{total}, 0,
	'raw events of span evicted');

$u = $t->get("/v1/usage/span?since=$since")->data;
is($u->{totalEvents}, 3, 'since inside the hour after eviction: its hour');
is_deeply($u->{byEventType}, { old => 2, new => 1 }, 'by type');
is($u->{resolution}, 'hour', 'resolution hour');

$h = $t->get('/v1/usage/span/history?interval=minute')->data;
is(scalar @{ $h->{dataPoints} }, 2, 'minute history unchanged by eviction');
is($h->{resolution}, 'hour', 'still hour');

###############################################################################
# the store keys of the stats

$st = $t->get('/v1/usage/stats')->data;
my $s = $st->{store};
is(ref $s, 'HASH', 'stats: store object');
for my $k (qw(maxEvents events recorded duplicates evictions expired drops
	buckets bucketEvictions bucketsExpired ids idEvictions rawBytes
	rawBytesUsed zoneBytesUsed zoneBytesFree saves))
{
	ok(exists $s->{$k} && defined $s->{$k} && $s->{$k} =~ /^\d+\z/,
		"store.$k is a number");
}
ok(exists $s->{savedAt}, 'store.savedAt present');
is($s->{savedAt}, undef, 'store.savedAt null without a state file');
is($s->{saves}, 0, 'store.saves 0 without a state file');
ok($s->{buckets} >= 3, "store.buckets ($s->{buckets})");
is($s->{bucketEvictions}, 0, 'store.bucketEvictions 0');
is($s->{ids}, 0, 'store.ids 0');
ok($s->{rawBytes} > 0 && $s->{rawBytes} < 1048576, 'store.rawBytes');
ok($s->{rawBytesUsed} > 0 && $s->{rawBytesUsed} <= $s->{rawBytes},
	'store.rawBytesUsed within rawBytes');
ok($s->{zoneBytesUsed} + $s->{zoneBytesFree} <= 1048576,
	'zone bytes within the zone');
is($st->{totalEvents}, 8, 'stats: totalEvents');

# a zone without max_events: maxEvents null, raw= shares the zone
$t->finish();

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m raw=25%;'))
	->run();
$t->post_json('/v1/events', { entityId => 'a', eventType => 'b', id => 'x' });
$r = $t->get('/v1/usage/stats');
like($r->body, qr/"maxEvents":null/, 'maxEvents null without max_events');
like($r->body, qr/"savedAt":null/, 'savedAt null');
$s = $r->data->{store};
ok($s->{rawBytes} <= 1048576 / 4 && $s->{rawBytes} > 1048576 / 8,
	"raw=25%: rawBytes $s->{rawBytes}");
is($s->{ids}, 1, 'store.ids counts the client id');
ok($s->{buckets} >= 1, "store.buckets ($s->{buckets})");

$t->done_testing();

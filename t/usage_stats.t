#!/usr/bin/perl

# GET /v1/usage/stats and GET /info: totalEvents, eventsLastHour,
# uniqueEntities, eventsByMinute, eventTypes, uptime {ms, human} and its
# format, startTime,
# the "store" object (maxEvents from max_events or SIZE/256, events,
# evictions, drops, zone bytes).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf parse_iso iso_ms $ISO_RE);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=500;'))
	->run();

my $t0 = time() * 1000;

my $r = $t->get('/v1/usage/stats');
is($r->status, 200, 'stats');
is($r->json->{success}, JSON::PP::true, 'envelope');
my $d = $r->data;
is($d->{totalEvents}, 0, 'empty: totalEvents');
is($d->{eventsLastHour}, 0, 'empty: eventsLastHour');
is($d->{uniqueEntities}, 0, 'empty: uniqueEntities');
is_deeply($d->{eventTypes}, {}, 'empty: eventTypes');
like($r->body, qr/"eventTypes":\{\}/, 'eventTypes rendered as {}');
like($d->{startTime} // '', $ISO_RE, 'startTime ISO');
my $start = parse_iso($d->{startTime}) // 0;
ok($start <= $t0 + 10 && $start > $t0 - 15000, 'startTime is nginx start');
like($d->{uptime}{human} // '', qr/^\d+s$/, 'uptime.human in seconds');
like($r->body, qr/"ms":\d+[,}]/, 'uptime.ms is an integer');
ok(abs($d->{uptime}{ms} - ($t0 - $start)) < 5000, 'uptime.ms from startTime');

my $s = $d->{store};
is(ref $s, 'HASH', 'store object');
is($s->{maxEvents}, 500, 'store.maxEvents from max_events');
is($s->{events}, 0, 'store.events');
is($s->{evictions}, 0, 'store.evictions');
is($s->{drops}, 0, 'store.drops');
like($s->{zoneBytesUsed} // '', qr/^\d+$/, 'store.zoneBytesUsed');
like($s->{zoneBytesFree} // '', qr/^\d+$/, 'store.zoneBytesFree');
ok($s->{zoneBytesUsed} + $s->{zoneBytesFree} <= 1048576, 'zone bytes <= 1m');
my $free0 = $s->{zoneBytesFree};

###############################################################################

my @ev = ([qw(u1 click)], [qw(u1 click)], [qw(u2 view)], [qw(u3 click)],
	[qw(u3 buy)], [qw(u1 view)]);
$t->post_event(@$_, { pad => 'x' x 200 }) for @ev;

$r = $t->get('/v1/usage/stats');
$d = $r->data;
is($d->{totalEvents}, 6, 'totalEvents');
is($d->{eventsLastHour}, 6, 'eventsLastHour');
is($d->{uniqueEntities}, 3, 'uniqueEntities');
is_deeply($d->{eventTypes}, { click => 3, view => 2, buy => 1 }, 'eventTypes');
is($d->{store}{events}, 6, 'store.events');
ok($d->{store}{zoneBytesFree} <= $free0, 'zone bytes used by events');
is(parse_iso($d->{startTime}), $start, 'startTime stable');

sleep 1.1;
$r = $t->get('/v1/usage/stats');
ok($r->data->{uptime}{ms} >= 1000, 'uptime grows');
like($r->data->{uptime}{human}, qr/^[1-9]\d*s$/, 'uptime.human Xs');
ok(abs($r->data->{uptime}{ms} - (time() * 1000 - $start)) < 2000,
	'uptime.ms matches');

# /info carries the same counters
my $i = $t->get('/info')->json;
is_deeply($i->{stats},
	{ totalEvents => 6, eventsLastHour => 6, uniqueEntities => 3 },
	'info stats');
like($i->{uptime}{human} // '', qr/^\d+s$/, 'info uptime.human');
ok($i->{uptime}{ms} >= 1000, 'info uptime.ms');

$t->finish();

###############################################################################
# eventsByMinute: the minutes eventsLastHour counts that hold events, by
# event time, ascending; their counts add up to eventsLastHour

$t = Test::Usage->new();
$t->write_config(api_conf())->run();
is_deeply($t->get('/v1/usage/stats')->data->{eventsByMinute}, [],
	'no event: eventsByMinute []');
my $now = int(time() * 1000);
my %want;
for my $back (50, 30, 30, 0, -3, 61.5, 90) {
	my $ms = $now - int($back * 60000);
	is($t->post_json('/v1/events', { entityId => 'm', eventType => 't',
		timestamp => iso_ms($ms) })->status, 201, "an event $back minutes back");
	$want{ $ms - $ms % 60000 }++ if $back <= 50;
}
$d = $t->get('/v1/usage/stats')->data;
my $mins = $d->{eventsByMinute};
is_deeply([map { parse_iso($_->{timestamp}) } @$mins], [sort { $a <=> $b } keys %want],
	'eventsByMinute: the minutes of the hour with events, ascending, the one ahead too');
is_deeply([map { $_->{count} } @$mins], [map { $want{$_} } sort { $a <=> $b } keys %want],
	'eventsByMinute: their counts');
my $sum = 0;
$sum += $_->{count} for @$mins;
is($sum, $d->{eventsLastHour}, 'they add up to eventsLastHour');
is($d->{totalEvents}, 7, 'the older ones are in totalEvents only');
$t->finish();

###############################################################################
# without max_events the raw log holds what fits in its share of the zone
# (raw=50% by default): no count limit

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m;'))->run();
$s = $t->get('/v1/usage/stats')->data->{store};
is($s->{maxEvents}, undef, 'no max_events: maxEvents null');
is($s->{rawBytes}, 524288, 'raw log: half of 1m');
$t->finish();

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=big:4m raw=25%;',
	location => 'usage_api big;') =~ s/usage_api usage;//r)->run();
is($t->get('/v1/usage/stats')->data->{store}{rawBytes}, 1048576,
	'raw=25% of 4m');

$t->done_testing();

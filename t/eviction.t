#!/usr/bin/perl

# Store limits: with max_events=5 the oldest events are evicted first and
# counted (store.evictions); a zone of the minimum size (64k) filled with
# large events keeps answering 201, evicts, and logs no alert/crit; an event
# larger than a quarter of the zone is refused (507) without evicting
# anything; a
# reload that lowers max_events trims the store at once.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Time::HiRes qw(sleep);

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=5;'))
	->run();

my @ids;
for my $i (0 .. 7) {
	push @ids, $t->post_event("ev$i", 'x')->data->{id};
	sleep 0.002;
}
is(scalar(grep { defined } @ids), 8, 'eight posts accepted');

my $r = $t->get('/v1/events');
is($r->data->{pagination}{total}, 5, 'five events kept');
is_deeply([map { $_->{id} } @{ $r->data->{events} }],
	[reverse @ids[3 .. 7]], 'the oldest three were evicted');

# totals come from the aggregates: raw eviction does not lower them
is($t->get('/v1/usage/stats')->data->{eventsLastHour}, 8,
	'eventsLastHour counts evicted events too');
is($t->get('/v1/usage/stats')->data->{totalEvents}, 8,
	'totalEvents counts evicted events too');
is($t->get('/v1/usage/ev0')->data->{totalEvents}, 1,
	'an evicted event is still in its entity summary');

my $s = $t->get('/v1/usage/stats')->data->{store};
is($s->{maxEvents}, 5, 'store.maxEvents');
is($s->{events}, 5, 'store.events');
is($s->{evictions}, 3, 'store.evictions');
is($s->{drops}, 0, 'store.drops');

is($t->get('/v1/events?entityId=ev0')->data->{pagination}{total}, 0,
	'evicted event not listed');
is($t->get('/v1/events?entityId=ev7')->data->{pagination}{total}, 1,
	'newest event listed');

# createdAt ties are listed in insertion order: keep them apart
for my $i (8 .. 27) {
	$t->post_event("ev$i", 'x');
	sleep 0.002;
}
$r = $t->get('/v1/events');
is($r->data->{pagination}{total}, 5, 'still five after 28 posts');
is($r->data->{events}[0]{entityId}, 'ev27', 'newest first');
is($t->get('/v1/usage/stats')->data->{store}{evictions}, 23,
	'evictions counted');

$t->finish();

###############################################################################
# the smallest zone, filled by size

$t = Test::Usage->new();
$t->write_config(api_conf(zone =>
	'usage_zone zone=usage:64k max_events=100000;'))->run();

my $pad = 'm' x 2000;
my $created = 0;
my @status;
for my $i (1 .. 60) {
	my $r = $t->post_event("big$i", 'fill', { pad => $pad, i => $i });
	$created++ if $r->status == 201;
	push @status, $r->status unless $r->status == 201;
	sleep 0.002;
}
is($created, 60, 'a full zone still accepts events (oldest evicted)')
	or diag "statuses: @status";

$r = $t->get('/v1/events?limit=1000');
is($r->status, 200, 'list from a full zone');
my $total = $r->data->{pagination}{total};
ok($total > 0 && $total < 60, "zone holds $total events");
is($r->data->{events}[0]{entityId}, 'big60', 'the newest is kept');
is($r->data->{events}[0]{metadata}{pad}, $pad, 'its metadata intact');

$s = $t->get('/v1/usage/stats')->data->{store};
ok($s->{evictions} > 0, 'evictions counted by size');
is($s->{events}, $total, 'store.events matches');
is($t->get('/health')->status, 200, 'healthy');
is($t->get('/ready')->status, 200, 'ready');

$t->finish();

###############################################################################
# an event too large for the zone is refused without evicting anything

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:64k;',
	location => 'usage_metadata_max_size 60k; client_max_body_size 100k;'))
	->run();

for my $i (1 .. 3) {
	is($t->post_event("keep$i", 'small')->status, 201, "small event $i");
}

$r = $t->post_event('huge', 'big', { p => 'x' x 20000 });
is($r->status, 507, 'an event larger than a quarter of the zone: 507');
is($r->err->{code}, 'STORE_FULL', '507 code');

$s = $t->get('/v1/usage/stats')->data->{store};
is($s->{events}, 3, 'stored events untouched by the refusal');
is($s->{evictions}, 0, 'nothing evicted for it');
is($s->{drops}, 1, 'the refusal is counted as a drop');

$t->finish();

###############################################################################
# max_events lowered by a reload applies at once, not at the next insert

$t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:1m max_events=100;'))
	->run();

for my $i (1 .. 20) {
	$t->post_event("low$i", 'x');
	sleep 0.002;
}

my $conf = $t->read_file('nginx.conf');
$conf =~ s/max_events=100;/max_events=10;/;
$t->write_file('nginx.conf', $conf);
ok($t->reload(), 'reloaded with max_events=10');

$s = $t->get('/v1/usage/stats')->data;
is($s->{store}{maxEvents}, 10, 'new maxEvents');
is($s->{store}{events}, 10, 'trimmed to the new maximum on the next read');
is($s->{totalEvents}, 20, 'totals unchanged by the trim');
is($s->{store}{evictions}, 10, 'trimming counted as evictions');
is($t->get('/v1/events?limit=1')->data->{events}[0]{entityId}, 'low20',
	'the newest kept');

$t->done_testing();

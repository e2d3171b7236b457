#!/usr/bin/perl

# Store limits: with max_events=5 the oldest events are evicted first and
# counted (store.evictions); a zone of the minimum size (32k) filled with
# large events keeps answering 201, evicts, and logs no alert/crit.

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
	'usage_zone zone=usage:32k max_events=100000;'))->run();

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

$t->done_testing();

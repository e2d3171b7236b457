#!/usr/bin/perl

# A full zone (256k) evicts and never drops:
#   - 500 events with ~3 KB of metadata over 5 entities: every POST is 201,
#     the raw ring evicts (store.evictions > 0, store.events small), the
#     totals (summaries, stats) count all 500, the newest event is intact;
#   - then small events for 3000 distinct entities: the slab fills with
#     aggregates and the least recently updated entities' buckets are
#     evicted (store.bucketEvictions > 0); every POST is still 201 and stats
#     totalEvents counts every event posted (store.drops 0);
#   - error.log: at most one "is full" [warn], no [crit]/[alert]; nginx
#     serves on.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);
use Time::HiRes qw(time);

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => 'usage_zone zone=usage:256k;'))->run();

# POST on a keep-alive connection, a new one when nginx closes it
my $c;
sub post {
	my ($ev) = @_;
	$c //= $t->connect();
	my $r = $c->request('POST', '/v1/events', keepalive => 1, json => $ev);
	if (!$r->status || ($r->header('Connection') // '') =~ /close/i) {
		$c->close();
		undef $c;
	}
	return $r;
}

sub stats { $t->get('/v1/usage/stats')->data }

###############################################################################
# large events: the raw ring evicts, the totals stay

my $pad = join '', map { chr(97 + $_ % 26) } 1 .. 3000;
my (%status, %per);
my $last;
for my $i (1 .. 500) {
	my $e = 'big' . ($i % 5);
	my $r = post({ entityId => $e, eventType => 'fill', value => 2,
		metadata => { pad => $pad, i => $i } });
	$status{ $r->status }++;
	$per{$e}++ if $r->status == 201;
	$last = $r->data if $r->status == 201;
}
is($status{201} // 0, 500, 'every large event answered 201')
	or diag explain \%status;

my $st = stats();
ok($st->{store}{evictions} > 0,
	"the raw ring evicts ($st->{store}{evictions})");
ok($st->{store}{events} > 0 && $st->{store}{events} < 100,
	"few raw events kept ($st->{store}{events})");
is($st->{store}{evictions} + $st->{store}{events}, 500,
	'evicted + kept = posted');
is($st->{store}{drops}, 0, 'no drop');
is($st->{store}{bucketEvictions}, 0, 'no aggregate evicted');
is($st->{totalEvents}, 500, 'stats totalEvents counts every event');
is_deeply($st->{eventTypes}, { fill => 500 }, 'stats eventTypes');

for my $e (sort keys %per) {
	my $s = $t->get("/v1/usage/$e")->data;
	is($s->{totalEvents}, $per{$e}, "$e: the summary counts all $per{$e}");
	is($s->{totalValue}, 2 * $per{$e}, "$e: totalValue");
}

my $l = $t->get('/v1/events?limit=1000')->data;
is($l->{pagination}{total}, $st->{store}{events}, 'the list holds what is kept');
my ($newest) = grep { $_->{id} eq $last->{id} } @{ $l->{events} };
is_deeply($newest, $last, 'the newest event kept intact');
is(scalar(grep { $_->{metadata}{pad} ne $pad } @{ $l->{events} }), 0,
	'every kept event intact');

###############################################################################
# many entities: the aggregates fill the slab, the oldest are evicted

my $N = 3000;
my ($ok, $bev_at, $first_bad, $posted) = (0, undef, undef, 0);
my %bad;
my $end = time() + 8;
for my $i (1 .. $N) {
	last if time() > $end;
	my $r = post({ entityId => "ent-$i", eventType => 'small',
		metadata => { i => $i } });
	$posted++;
	if ($r->status == 201) {
		$ok++;
	} else {
		$bad{ $r->status . ' ' . ($r->err->{code} // '') }++;
		$first_bad //= $i;
	}
	if (!$bev_at && $i % 50 == 0 && stats()->{store}{bucketEvictions} > 0) {
		$bev_at = $i;
	}
}
is($posted, $N, "$N entities posted in time");
ok($bev_at, 'aggregate buckets evicted (after ' . ($bev_at // '-')
	. ' entities)');
is($ok, $posted, 'every small event answered 201')
	or diag("first refused: entity $first_bad; refused: "
		. join(', ', map { "$_ x $bad{$_}" } sort keys %bad));

$st = stats();
is($st->{totalEvents}, 500 + $posted, 'stats totalEvents counts every event');
is($st->{store}{drops}, 0, 'no drop');
ok($st->{store}{bucketEvictions} > 0,
	"store.bucketEvictions $st->{store}{bucketEvictions}");
is($st->{store}{recorded}, 500 + $ok, 'store.recorded');

# the newest entities are whole: their aggregates were just written
is($t->get("/v1/usage/ent-$posted")->data->{totalEvents}, 1,
	'the newest entity is counted');

is($t->get('/health')->status, 200, 'healthy');
is($t->get('/ready')->status, 200, 'ready');
is(post({ entityId => 'big0', eventType => 'fill' })->status, 201,
	'an event for an old entity');
is(post({ entityId => 'fresh', eventType => 'fresh' })->status, 201,
	'an event for a new entity');

my $log = $t->read_file('error.log');
my $warns = () = $log =~ /\[warn\].*usage zone "usage" is full/g;
ok($warns <= 1, "at most one \"is full\" warning ($warns)");
unlike($log, qr/\[(?:crit|alert)\]/, 'no crit, no alert');
unlike($log, qr/exited on signal/, 'no worker died');

$t->done_testing();

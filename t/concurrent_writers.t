#!/usr/bin/perl

# 64 concurrent clients (processes that start together), 50 events each on
# a keep-alive connection, over 10 entities, 4 event types, values and
# client timestamps spread over the last minutes, through both workers.
# Afterwards every aggregate is exact: each entity's summary total is the
# number of its 201 answers, stats totalEvents the total; and with nothing
# evicted every aggregate equals a recount of the raw events: byEventType,
# valueByEventType, totalValue, and the minute history (count and value per
# minute of the event time).

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms parse_iso $UUID4_RE);
use Time::HiRes qw(time);

my $CLIENTS = 64;
my $EACH = 50;
my @ENTITIES = map { "cw$_" } 0 .. 9;

my $t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport',
	zone => 'usage_zone zone=usage:8m;',
	location => 'add_header X-Worker $pid always;'))->run();

my $now = int(time() * 1000);

my @out = $t->parallel($CLIENTS, sub {
	my ($i) = @_;
	my $out = '';
	my $c = $t->connect();
	for my $n (1 .. $EACH) {
		my $e = $ENTITIES[($i * 7 + $n) % @ENTITIES];
		my %ev = (entityId => $e, eventType => 't' . (($i + $n) % 4),
			value => (($i * $n) % 9) * 0.5);
		# a quarter of them 1..5 minutes back
		$ev{timestamp} = iso_ms($now - (($i + $n) % 5 + 1) * 60000
			- ($n * 997) % 60000)
			if $n % 4 == 0;
		my $r = $c ? $c->request('POST', '/v1/events', keepalive => 1,
			json => \%ev) : undef;
		my $status = $r ? $r->status : 0;
		$out .= join(' ', $e, $status, $r && $r->header('X-Worker') // '-',
			$status == 201 ? $r->data->{id} : '-') . "\n";
		$c = $t->connect() unless $status;
	}
	return $out;
}, timeout => 30);

my (%created, %status, %workers, %ids);
for my $text (@out) {
	next unless defined $text;
	for (split /\n/, $text) {
		my ($e, $status, $w, $id) = split / /;
		$status{$status}++;
		$workers{$w}++;
		next unless $status == 201;
		$created{$e}++;
		$ids{$id}++;
	}
}

my $N = $CLIENTS * $EACH;
is(scalar(grep { defined } @out), $CLIENTS, 'every client finished');
is($status{201} // 0, $N, "all $N posts answered 201")
	or diag explain \%status;
is(scalar(keys %workers), 2, 'both workers took events');
is(scalar(keys %ids), $N, 'ids unique');
is(scalar(grep { !/$UUID4_RE/ } keys %ids), 0, 'ids are uuids');

my $st = $t->get('/v1/usage/stats')->data;
is($st->{totalEvents}, $N, 'stats totalEvents');
is($st->{uniqueEntities}, scalar @ENTITIES, 'stats uniqueEntities');
is($st->{store}{events}, $N, 'store.events: every raw event kept');
is($st->{store}{evictions}, 0, 'store.evictions 0');
is($st->{store}{bucketEvictions}, 0, 'store.bucketEvictions 0');
is($st->{store}{drops}, 0, 'store.drops 0');
is($st->{store}{recorded}, $N, 'store.recorded');

my %types;
for my $e (@ENTITIES) {
	my $s = $t->get("/v1/usage/$e")->data;
	is($s->{totalEvents}, $created{$e}, "$e: total = its 201 answers");

	# the raw events, all of them
	my @ev;
	my $offset = 0;
	while (1) {
		my $d = $t->get("/v1/events?entityId=$e&limit=1000&offset=$offset")
			->data;
		push @ev, @{ $d->{events} || [] };
		last unless $d->{pagination}{hasMore};
		$offset += 1000;
		last if $offset > 10000;
	}
	is(scalar @ev, $created{$e}, "$e: every event listed");

	my (%count, %value, %mcount, %mvalue, $total);
	for (@ev) {
		$count{ $_->{eventType} }++;
		$value{ $_->{eventType} } += $_->{value};
		$total += $_->{value};
		$types{ $_->{eventType} }++;
		my $m = iso_ms(int(parse_iso($_->{timestamp}) / 60000) * 60000);
		$mcount{$m}++;
		$mvalue{$m} += $_->{value};
	}
	is_deeply($s->{byEventType}, \%count, "$e: byEventType = recount");
	is_deeply($s->{valueByEventType}, \%value,
		"$e: valueByEventType = recount");
	is($s->{totalValue}, $total, "$e: totalValue = recount");
	is($s->{resolution}, 'exact', "$e: resolution exact");

	my $h = $t->get("/v1/usage/$e/history?interval=minute")->data;
	is_deeply($h->{dataPoints}, [map { { timestamp => $_,
		count => $mcount{$_}, value => $mvalue{$_} } } sort keys %mcount],
		"$e: minute history = recount by minute of the event time");
}
is_deeply($st->{eventTypes}, \%types, 'stats eventTypes = recount');

my $l = $t->get('/v1/events?limit=1')->data;
is($l->{pagination}{total}, $N, 'list total');

$t->done_testing();

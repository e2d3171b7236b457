#!/usr/bin/perl

# Cursor walks of GET /v1/events while the store changes under them, on 2
# workers: a writer POSTs singles and batches (a batch's events share one
# createdAt) into a zone whose max_events makes the oldest go, while a
# walk pages from the newest to the oldest.  Every walk gives each event
# that stayed stored from its first page to its last exactly once, in the
# list's order.  Then the two ways a
# cursor's own event leaves: retention takes it (a back-dated event) while
# older ones stay, and the walk goes on from the next one; eviction takes
# it with everything older, and the next page is the last, empty.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf iso_ms);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
$t->write_config(api_conf(
	zone => 'usage_zone zone=usage:8m max_events=6000 retention=1h;'))->run();

sub batch {
	my ($entity, $n, %o) = @_;
	return $t->post_json('/v1/events/batch', { events => [map { {
		entityId => ref $entity ? $entity->[$_ % @$entity] : $entity,
		eventType => "t" . ($_ % 3), %o } } 1 .. $n] });
}

# every event stored, as one offset listing (newest first)
sub listing {
	my ($q) = @_;
	my (@ids, %created);
	for (my $off = 0; ; $off += 1000) {
		my $r = $t->get("/v1/events?limit=1000&offset=$off$q");
		die $r->body unless $r->status == 200;
		for (@{ $r->data->{events} }) {
			push @ids, $_->{id};
			$created{$_->{id}} = $_->{createdAt};
		}
		last unless $r->data->{pagination}{hasMore};
	}
	return (\@ids, \%created);
}

sub walk {
	my ($q, $limit, $pause) = @_;
	my (@ids, %created, $c);
	$c = '';
	for my $page (1 .. 1000) {
		my $r = $t->get("/v1/events?limit=$limit&cursor=$c$q");
		return (undef, $r->status . ' ' . $r->body) unless $r->status == 200;
		for (@{ $r->data->{events} }) {
			push @ids, $_->{id};
			$created{$_->{id}} = $_->{createdAt};
		}
		$c = $r->data->{pagination}{nextCursor};
		last unless defined $c;
		sleep $pause;
	}
	return (\@ids, \%created);
}

my @entities = map { "w-$_" } 1 .. 5;

for (1 .. 40) {
	is(batch(\@entities, 100)->status, 201, 'seeded') or last;
}

for my $q ('', '&eventType=t1', '&entityId=w-2', '&entityId=w-3&eventType=t0')
{
	my ($before) = listing($q);

	# the writers run in the background while this process walks
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0) {
		my $end = time() + 2.5;
		my $n = 0;
		while (time() < $end) {
			($n % 3) ? $t->post_json('/v1/events', {
					entityId => $entities[$n % 5], eventType => 't1' })
				: batch(\@entities, 50);
			$n++;
		}
		POSIX::_exit(0);
	}

	sleep 0.2;
	my ($walked, $created) = walk($q, 97, 0.02);
	waitpid($pid, 0);
	ok($walked, "walk$q under writes") or diag($created), next;

	my ($after) = listing($q);

	my %seen;
	is(scalar(grep { $seen{$_}++ } @$walked), 0, "walk$q: no event twice");

	my @times = map { $created->{$_} } @$walked;
	is_deeply(\@times, [sort { $b <=> $a } @times],
		"walk$q: newest first");

	my %after = map { $_ => 1 } @$after;
	my @stayed = grep { $after{$_} } @$before;
	my @missed = grep { !$seen{$_} } @stayed;
	is(scalar(@missed), 0, "walk$q: each of the " . scalar(@stayed)
		. ' events that stayed is in it')
		or diag("missed: @missed[0 .. ($#missed < 4 ? $#missed : 4)]");

	# the events that stayed come in the order they were listed before
	my %at;
	@at{@$walked} = 0 .. $#$walked;
	my @order = grep { exists $at{$_} } @stayed;
	is_deeply([sort { $at{$a} <=> $at{$b} } @order], \@order,
		"walk$q: in the order listed before");

	my $evicted = grep { !$after{$_} } @$before;
	ok($evicted > 0, "walk$q: the writers made $evicted events go");
}

###############################################################################
# the cursor's event taken by retention, older events staying

my $t2 = Test::Usage->new();
$t2->write_config(api_conf(
	zone => 'usage_zone zone=usage:1m retention=1m;'))->run();

my $now = int(time() * 1000);
my @ids;
for my $i (1 .. 6) {
	# the 4th event's own time is 58 s back: it leaves the window first
	my %e = (entityId => 'ret', eventType => 'x');
	$e{timestamp} = iso_ms($now - 58_000) if $i == 4;
	my $r = $t2->post_json('/v1/events', \%e);
	is($r->status, 201, "retention: event $i") or diag($r->body);
	push @ids, $r->data->{id};
	sleep 0.005;
}

my $r = $t2->get('/v1/events?limit=3&cursor=');
is_deeply([map { $_->{id} } @{ $r->data->{events} }], [@ids[5, 4, 3]],
	'retention: the first page ends with the back-dated event');
my $c = $r->data->{pagination}{nextCursor};

Test::Usage::wait_until(sub {
	!grep { $_->{id} eq $ids[3] }
		@{ $t2->get('/v1/events?limit=10')->data->{events} }
}, 10);

$r = $t2->get("/v1/events?limit=3&cursor=$c");
is($r->status, 200, 'retention: its cursor still works');
is_deeply([map { $_->{id} } @{ $r->data->{events} }], [@ids[2, 1, 0]],
	'retention: the next page goes on from the next stored event');
is($r->data->{pagination}{nextCursor}, undef, 'retention: the last page');

###############################################################################
# the cursor's event evicted with everything older

my $t3 = Test::Usage->new();
$t3->write_config(api_conf(
	zone => 'usage_zone zone=usage:1m max_events=100;'))->run();

sub batch3 {
	return $t3->post_json('/v1/events/batch', { events => [
		map { { entityId => 'ev', eventType => 'x' } } 1 .. 50] })->status;
}
is(batch3() . batch3(), '201201', 'eviction: 100 events');
$r = $t3->get('/v1/events?limit=99&cursor=');
$c = $r->data->{pagination}{nextCursor};
ok(defined $c, 'eviction: a cursor one event before the oldest');
is(batch3() . batch3(), '201201', 'eviction: 100 more push them all out');
$r = $t3->get("/v1/events?limit=99&cursor=$c");
is($r->status, 200, 'eviction: the cursor still works');
is_deeply($r->data->{events}, [], 'eviction: nothing older is stored');
is_deeply($r->data->{pagination}, { limit => 99, nextCursor => undef,
	hasMore => JSON::PP::false }, 'eviction: the last page');

$t2->finish();
$t3->finish();
$t->done_testing();

#!/usr/bin/perl

# Concurrent writers and readers on both workers: 4 processes POST 100 events
# each (keepalive) while another reads; every POST is 201, the ids are
# unique, and the counts are exact afterwards.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_decode);
use POSIX ();

my $t = Test::Usage->new();
$t->write_config(api_conf(listen => 'reuseport',
	zone => 'usage_zone zone=usage:4m max_events=10000;'))->run();

my $WRITERS = 4;
my $EACH = 100;

my @kids;
for my $w (1 .. $WRITERS + 1) {
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0) {
		my $out = '';
		my $c = $t->connect();
		for my $i (1 .. $EACH) {
			if ($w > $WRITERS) {
				my $r = $c->request('GET', '/v1/usage/stats', keepalive => 1);
				$out .= ($r->status == 200 ? 'R' : 'E' . $r->status) . "\n";
				next;
			}
			$c = $t->connect() if $i % 25 == 0;
			my $r = $c->request('POST', '/v1/events', keepalive => 1,
				json => { entityId => "w$w", eventType => "t" . ($i % 3),
					metadata => { i => $i } });
			$out .= ($r->status == 201 ? $r->data->{id} : 'E' . $r->status)
				. "\n";
		}
		$t->write_file("kid-$w.out", $out);
		POSIX::_exit(0);
	}
	push @kids, $pid;
}

for my $pid (@kids) {
	waitpid($pid, 0);
}

my (%ids, $errors);
for my $w (1 .. $WRITERS) {
	for my $line (split /\n/, $t->read_file("kid-$w.out")) {
		$errors++ if $line =~ /^E/;
		$ids{$line}++;
	}
}
my $reads = () = $t->read_file('kid-' . ($WRITERS + 1) . '.out') =~ /^R$/mg;

is($errors // 0, 0, 'every POST answered 201');
is(scalar keys %ids, $WRITERS * $EACH, 'ids unique');
is($reads, $EACH, 'concurrent reads answered');

my $s = $t->get('/v1/usage/stats')->data;
is($s->{totalEvents}, $WRITERS * $EACH, 'totalEvents exact');
is($s->{uniqueEntities}, $WRITERS, 'uniqueEntities');
is_deeply($s->{eventTypes}, { t0 => 132, t1 => 136, t2 => 132 },
	'eventTypes exact');

for my $w (1 .. $WRITERS) {
	my $r = $t->get("/v1/usage/w$w");
	is($r->data->{totalEvents}, $EACH, "w$w summary");
}

my $r = $t->get('/v1/events?limit=1000');
is($r->data->{pagination}{total}, $WRITERS * $EACH, 'list total');
my %listed = map { $_->{id} => 1 } @{ $r->data->{events} };
is(scalar(grep { $listed{$_} } keys %ids), $WRITERS * $EACH,
	'every created id is listed');

$t->done_testing();

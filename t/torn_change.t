#!/usr/bin/perl

# A worker killed while it holds the zone lock, in the middle of an
# insert: gdb stops the worker at one step of the insert (a breakpoint in
# the module), then kills it there, so the half-made change is exact, not
# left to chance as in t/sigkill.t.  nginx's master frees the lock; the
# next holder finds the dead worker's mark, logs it and counts it in
# usage_store_torn_total.  Whatever step it died at, the retry of the
# event (same client id) never counts it twice, and the store goes on:
# later events are stored, counted and listed exactly.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf wait_until alive);
use Time::HiRes qw(sleep time);

my $gdb = '/usr/bin/gdb';
BAIL_OUT("$gdb is missing: scripts/test.sh installs it") unless -x $gdb;

my $t = Test::Usage->new();
$t->write_config(api_conf(zone => q{usage_zone zone=usage:4m;},
	server => q{location = /metrics { usage_metrics usage; }}))->run();
$t->allow_emerg(qr/\[alert\] .*worker process \d+ exited on signal 9/);
$t->allow_emerg(qr/\[alert\] .*shared memory zone "usage" was locked by \d+/);

my $master = $t->master_pid;

sub metric {
	my ($name) = @_;
	my $body = $t->get('/metrics')->body // '';
	return $body =~ /^\Q$name\E(?:\{[^}]*\})? (\d+)$/m ? $1 : undef;
}

sub post_id {
	my ($entity, $id, %o) = @_;
	return $t->post_json('/v1/events',
		{ entityId => $entity, eventType => 'call', id => $id, value => 2 },
		%o);
}

# the events of an entity in the list, by client id
sub listed {
	my ($entity) = @_;
	my %n;
	my $d = $t->get("/v1/events?entityId=$entity&limit=1000")->data;
	$n{ $_->{id} }++ for @{ $d->{events} || [] };
	return \%n;
}

# attaches gdb to one worker with a breakpoint at $fn, which kills the
# worker when it is reached; returns the worker's pid once armed
sub arm {
	my ($fn, $out) = @_;
	my ($victim) = $t->worker_pids($master);
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>', $out or die;
		open STDERR, '>&', \*STDOUT or die;
		exec 'timeout', '60', $gdb, '-p', $victim, '-batch', '-nx',
			'-ex', 'set pagination off', '-ex', "break $fn",
			'-ex', 'continue', '-ex', 'kill';
		exit 127;
	}
	my $armed = wait_until(sub {
		$t->read_file($out) =~ /^Breakpoint 1 at/m }, 30);
	return ($victim, $pid, $armed);
}

# each step of an insert, and what the retry must find
my @steps = (
	# nothing counted yet, the id not yet known: the retry stores it
	[ 'ngx_http_usage_idx_add_locked', 201, 1, 1 ],
	# the id known, the event not counted: the retry is "stored already"
	[ 'ngx_http_usage_insert_count_locked', 200, 0, 0 ],
	# counted, not yet listed: the retry is "stored already"
	[ 'ngx_http_usage_insert_raw_locked', 200, 1, 0 ],
);

my $torn = 0;
my $n = 0;

for my $step (@steps) {
	my ($fn, $retry_status, $counted, $in_list) = @$step;
	my $entity = "torn-$n";
	my $out = $t->dir . "/gdb-$n.out";
	$n++;

	my ($victim, $gdb_pid, $armed) = arm($fn, $out);
	ok($armed, "$fn: gdb armed in worker $victim")
		or diag($t->read_file($out));

	# fresh connections until one reaches the stopped worker: the others
	# are stored by the other worker
	my ($hit, $stored) = (undef, 0);
	for my $i (1 .. 60) {
		my $r = post_id($entity, "e$i", timeout => 10);
		if (!$r->status) {
			$hit = "e$i";
			last;
		}
		$stored++ if $r->status == 201;
	}
	ok($hit, "$fn: an insert reached the breakpoint ($stored stored "
		. "by the other worker first)");
	waitpid($gdb_pid, 0);
	like($t->read_file($out), qr/Breakpoint 1, \Q$fn\E/,
		"$fn: the worker stopped in the insert") or diag($t->read_file($out));
	ok(wait_until(sub { !alive($victim) }, 10), "$fn: the worker is dead");
	ok(wait_until(sub { $t->worker_pids($master) == 2 }, 10),
		"$fn: the master started another");

	my $r = post_id($entity, $hit);
	is($r->status, $retry_status, "$fn: the retry answers $retry_status");
	$torn++;
	is(metric('usage_store_torn_total'), $torn,
		"$fn: the half-made change is counted");

	my $total = $t->get("/v1/usage/$entity")->data->{totalEvents} // 0;
	is($total, $stored + $counted,
		"$fn: the event is counted $counted time(s), the others once");
	my $list = listed($entity);
	is($list->{$hit} // 0, $in_list, "$fn: listed $in_list time(s)");
	is(scalar(grep { $_ > 1 } values %$list), 0, "$fn: no id listed twice");

	# the store goes on: a new event is stored, counted and listed
	is(post_id($entity, 'after')->status, 201, "$fn: a new event is stored");
	is($t->get("/v1/usage/$entity")->data->{totalEvents},
		$total + 1, "$fn: and counted");
	is(listed($entity)->{after}, 1, "$fn: and listed");
	is(post_id($entity, 'after')->status, 200, "$fn: and known by its id");
}

my $log = $t->read_file('error.log');
my @logged = $log =~ /\[error\] .*usage zone "usage": process (\d+) died while changing it/g;
is(scalar @logged, $torn, 'one error-log line for each half-made change');
my @locked = $log =~ /shared memory zone "usage" was locked by (\d+)/g;
is_deeply([sort @logged], [sort @locked],
	'each names the worker nginx unlocked the zone of');

my $st = $t->get('/v1/usage/stats')->data;
my $sum = 0;
$sum += $t->get("/v1/usage/torn-$_")->data->{totalEvents} for 0 .. $#steps;
is($st->{totalEvents}, $sum, 'stats totalEvents is the sum of the entities');

$t->done_testing();

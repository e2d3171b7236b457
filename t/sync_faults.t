#!/usr/bin/perl

# usage_sync when Redis loses the stream (issue 12, step e), against a
# real redis-server on a free loopback port and three instances taking
# POSTs round-robin from several clients:
#   - FLUSHALL in the middle of the load: every instance finds the
#     stream's epoch gone or changed (one [warn] each), reads the new
#     stream from its start and publishes its last minute of events
#     again; once the load stops, the three agree on every entity
#     (summary, history, the event list with the same ids and createdAt)
#     and the units counted equal the 201s given: none lost, none twice;
#   - Redis killed and started again empty (no persistence) in the middle
#     of the load: the same, after a time without Redis ("degraded");
#   - the epoch is the same on all instances (/info), the losses and the
#     re-published events are counted (/metrics);
#   - only the epoch's key deleted: the stream still holds what the zones
#     read, so no instance calls it a loss (a [notice], a new epoch);
#   - an instance stopped, and started again from its state file after
#     Redis lost the stream (and while the others took events before and
#     after the loss): the file keeps the epoch it read (format version
#     4), so it notices the loss at once, and the three agree again.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(differences converged metric sync_state);
use Test::UsageState;
use Time::HiRes qw(sleep time);

my $redis = Test::UsageRedis->new();

sub conf {
	my ($name, $extra) = @_;
	$extra //= '';
	my $addr = $redis->addr;
	return <<"EOF";
http {
    usage_zone zone=usage:32m $extra;
    usage_sync zone=usage redis=$addr name=$name interval=200ms;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; usage_track usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub instance {
	my ($name, $extra) = @_;
	my $t = Test::Usage->new();
	mkdir $t->dir . '/state';
	chmod 0777, $t->dir . '/state';    # workers run as nobody under root
	$t->write_config(conf($name, $extra))->run();
	ok(wait_until(sub { sync_state($t) eq 'ok' }, 10), "$name: sync ok");
	return $t;
}

sub info_sync {
	my ($t) = @_;
	return ($t->get("/info")->json // {})->{sync} // {};
}

sub units {
	my ($t, @entities) = @_;
	my $sum = 0;
	for my $e (@entities) {
		my $s = ($t->get("/v1/usage/$e")->json // {})->{data} // {};
		$sum += $s->{byEventType}{unit} // 0;
	}
	return $sum;
}

# clients POSTing round-robin to the instances for $seconds
sub load_start {
	my ($ts, $entities, $seconds, $clients) = @_;
	return $ts->[0]->background($clients, $seconds, sub {
		my ($k, $i) = @_;
		my $t = $ts->[($i + $k) % @$ts];
		my $e = $entities->[($i * 7 + $k) % @$entities];
		return $t->post_json('/v1/events',
			{ entityId => $e, eventType => 'unit' })->status == 201;
	});
}

sub load_wait {
	my ($ts, $bg) = @_;
	return $ts->[0]->background_wait($bg);
}

sub lost_lines {
	my ($t) = @_;
	return () = $t->read_file('error.log')
		=~ /\[warn\].*usage sync: redis \S+ lost stream "usage:events"/g;
}

my @ts = (instance('a'), instance('b'),
	instance('c', 'state=%%TESTDIR%%/state/usage.state'));
my @entities = map { "f$_" } 1 .. 5;
my $units = 0;

# an epoch, the same everywhere
my $epoch = info_sync($ts[0])->{epoch} // '';
like($epoch, qr/^[0-9a-f]{16}$/, '/info: the epoch of the stream');
is(scalar(grep { (info_sync($_)->{epoch} // '') eq $epoch } @ts), 3,
	'every instance reads the same epoch');
is($redis->cmd('GET', 'usage:events:epoch'), $epoch,
	'it is the one in Redis (<stream>:epoch)');

###############################################################################
# only the epoch's key lost (deleted, or evicted): the stream is intact,
# nothing is read or published again

{
	is($ts[0]->post_json('/v1/events', { entityId => 'f1', eventType => 'unit' })
		->status, 201, 'an event, so that every instance has read entries');
	$units++;
	sleep 1;
	is($redis->cmd('DEL', 'usage:events:epoch'), 1, 'the epoch key deleted');
	ok(wait_until(sub {
		my $e = $redis->cmd('GET', 'usage:events:epoch') // '';
		$e =~ /^[0-9a-f]{16}$/ && $e ne $epoch
			&& 3 == grep { (info_sync($_)->{epoch} // '') eq $e } @ts;
	}, 10), 'a new epoch, taken by every instance');
	is(scalar(grep { lost_lines($_) == 0 } @ts), 3,
		'none says that the stream is lost');
	is(scalar(grep { metric($_, 'usage_sync_stream_losses_total') == 0 } @ts),
		3, 'none counts a loss');
	is(scalar(grep { $_->read_file('error.log')
		=~ /\[notice\].*had lost only the epoch of stream "usage:events"/ } @ts),
		3, 'each says in a [notice] that only the epoch was lost');
	$epoch = info_sync($ts[0])->{epoch};
}

###############################################################################
# FLUSHALL under load

{
	my $kids = load_start(\@ts, \@entities, 3, 4);
	sleep 1.2;
	is($redis->cmd('FLUSHALL'), 'OK', 'FLUSHALL in the middle of the load');
	$units += load_wait(\@ts, $kids);
	cmp_ok($units, '>', 300, "$units POSTs answered 201");

	ok(wait_until(sub { !differences(\@ts, @entities) }, 20),
		'after FLUSHALL the three instances agree on every entity')
		or diag(join "\n", differences(\@ts, @entities));
	is(units($ts[$_], @entities), $units,
		"instance $_: the units counted equal the 201s") for 0 .. 2;

	is(scalar(grep { lost_lines($_) == 1 } @ts), 3,
		'each instance says once that Redis lost the stream');
	is(scalar(grep { metric($_, 'usage_sync_stream_losses_total') == 1 } @ts),
		3, '/metrics: usage_sync_stream_losses_total');
	cmp_ok(metric($ts[0], 'usage_sync_republished_total'), '>', 0,
		'/metrics: usage_sync_republished_total');

	my $new = info_sync($ts[0])->{epoch} // '';
	isnt($new, $epoch, 'a new epoch');
	is(scalar(grep { (info_sync($_)->{epoch} // '') eq $new } @ts), 3,
		'the same on every instance');
	is(info_sync($ts[1])->{streamLosses}, 1, '/info: streamLosses');
	$epoch = $new;
}

###############################################################################
# Redis killed and started again, empty, under load

{
	my $kids = load_start(\@ts, \@entities, 4, 4);
	sleep 1;
	$redis->kill();
	ok(wait_until(sub { sync_state($ts[0]) eq 'degraded' }, 5),
		'redis killed: degraded');
	sleep 1;
	$redis->start();
	$units += load_wait(\@ts, $kids);

	ok(wait_until(sub { sync_state($ts[0]) eq 'ok' }, 10), 'redis back: ok');
	ok(wait_until(sub { !differences(\@ts, @entities) }, 20),
		'after a restart without data the three instances agree')
		or diag(join "\n", differences(\@ts, @entities));
	is(units($ts[$_], @entities), $units,
		"instance $_: the units counted equal the 201s ($units)") for 0 .. 2;
	is(scalar(grep { lost_lines($_) == 2 } @ts), 3,
		'each instance noticed the second loss');
	# (the api-self event of each request to it ships within a tick)
	ok(wait_until(sub { metric($ts[2], 'usage_sync_queued') == 0 }, 5),
		'nothing left queued');
}

###############################################################################
# the epoch in the state file: a restart notices a loss that happened
# while the instance was down

{
	my $c = $ts[2];
	my $epoch_c = info_sync($c)->{epoch};
	$c->stop();
	my $st = Test::UsageState::parse($c->read_file('state/usage.state'));
	is(sprintf('%016x', $st->{fleet}{epoch} // 0), $epoch_c,
		'the state file keeps the epoch (format version 4)');

	my $ok = 0;
	for my $i (0 .. 59) {
		$ok++ if $ts[$i % 2]->post_json('/v1/events',
			{ entityId => $entities[$i % @entities], eventType => 'unit' }
		)->status == 201;
		$redis->cmd('FLUSHALL') if $i == 29;
	}
	is($ok, 60, 'a and b take events before and after a FLUSHALL');
	$units += $ok;

	$c->run();
	ok(wait_until(sub { lost_lines($c) == 3 }, 10),
		'c, started again, notices that Redis lost the stream meanwhile');
	ok(wait_until(sub { !differences(\@ts, @entities) }, 20),
		'and the three agree again')
		or diag(join "\n", differences(\@ts, @entities));
	is(units($ts[$_], @entities), $units,
		"instance $_: the units counted equal the 201s ($units)") for 0 .. 2;
}

$_->finish() for @ts;

done_testing();

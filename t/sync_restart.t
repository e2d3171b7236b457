#!/usr/bin/perl

# usage_sync across stops and restarts (issue 12, steps g and the state
# file's part), against a real redis-server:
#   - a graceful stop (QUIT) while Redis is slow ships the whole queue
#     before the workers exit: the other instance counts every event;
#   - an instance SIGKILLed and restarted from its state file goes on
#     from the saved read position as a new origin: it counts what it took
#     after its last save (back from the stream), nothing twice, and
#     agrees with the other instance; the restored file has the fleet's
#     part (format version 4);
#   - an instance stopped while Redis answers nothing (CLIENT PAUSE), its
#     queue not shipped: the state file says where the queue starts, and
#     the restarted instance publishes those events again; the other
#     counts each once, also those of a batch that Redis ran after the
#     pause (both copies come).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(metric);
use Test::UsageState;
use Time::HiRes qw(sleep time);

my $redis = Test::UsageRedis->new();

sub conf {
	my ($name, $extra, $zone_extra) = @_;
	my $addr = $redis->addr;
	$extra //= '';
	$zone_extra //= '';
	return <<"EOF";
http {
    usage_zone zone=usage:4m $zone_extra;
    usage_sync zone=usage redis=$addr name=$name $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub sync_ok {
	my ($t) = @_;
	return wait_until(sub {
		(($t->get('/ready')->json // {})->{checks}{sync} // '') eq 'ok'
	}, 10);
}

sub instance {
	my ($name, $extra, $zone_extra) = @_;
	my $t = Test::Usage->new();
	mkdir $t->dir . '/state';
	chmod 0777, $t->dir . '/state';    # workers run as nobody under root
	$t->write_config(conf($name, $extra, $zone_extra))->run();
	ok(sync_ok($t), "$name: sync ok");
	return $t;
}

sub units {
	my ($t, $entity) = @_;
	return (($t->get("/v1/usage/$entity")->json // {})->{data} // {})
		->{byEventType}{unit} // 0;
}

sub post_n {
	my ($t, $entity, $n) = @_;
	my $ok = 0;
	for (1 .. $n) {
		$ok++ if $t->post_json('/v1/events',
			{ entityId => $entity, eventType => 'unit' })->status == 201;
	}
	return $ok;
}

###############################################################################
# a graceful stop ships the queue first

{
	my $a = instance('drain-a', 'batch=5');
	my $b = instance('drain-b');

	# Redis takes no write for 1.5 s: the batches wait in a's queue
	$redis->cmd('CLIENT', 'PAUSE', '1500', 'WRITE');
	is(post_n($a, 'drained', 300), 300, '300 POSTs to a while redis pauses');
	cmp_ok(metric($a, 'usage_sync_queued'), '>', 200, 'most wait in the queue');
	my $t0 = time;
	$a->stop();
	my $took = time - $t0;
	cmp_ok($took, '>', 0.3, sprintf('a stops once its queue is shipped (%.1f s)',
		$took));
	ok(wait_until(sub { units($b, 'drained') == 300 }, 10),
		'b counts all 300 events a took')
		or diag(units($b, 'drained'));
	like($a->read_file('error.log'), qr/exit/, 'a exited');
	$a->finish();
	$b->finish();
}

###############################################################################
# SIGKILL, then a restart from the state file

{
	$redis->cmd('DEL', 'usage:events');
	my $b = instance('kill-b');
	my $a = instance('kill-a', '',
		'state=%%TESTDIR%%/state/usage.state state_interval=1h');
	$a->allow_emerg(qr/\[alert\] .*(exited on signal 9|worker process \d+ exited)/);

	is(post_n($a, 'k', 100), 100, '100 events to a');
	$a->reload();                   # the old workers save as they exit
	ok(wait_until(sub {
		my $f = $a->read_file('state/usage.state');
		length $f && eval {
			my $s = Test::UsageState::parse($f);
			$s->{fleet} && $s->{fleet}{seq} >= 100;
		};
	}, 10), 'a saved them, with the fleet part');
	is(post_n($a, 'k', 50), 50, '50 more, after the save');
	ok(wait_until(sub { units($b, 'k') == 150 }, 5), 'b has all 150');

	my $saved = Test::UsageState::parse($a->read_file('state/usage.state'));
	is($saved->{fleet}{seq}, 100, 'the file holds the first 100 only');
	ok($saved->{fleet}{read_ms} > 0, 'and a read position');
	is(Test::UsageState::version($a->read_file('state/usage.state')), 4,
		'the state file is of version 4');
	$a->crash();
	ok(!$a->alive, 'a killed with SIGKILL');

	$a->run();
	ok(sync_ok($a), 'a restarted from its state file');
	ok(wait_until(sub { units($a, 'k') == 150 }, 10),
		'a counts the 150: those of the file, and those after it from the '
		. 'stream') or diag(units($a, 'k') . " (saved seq $saved->{fleet}{seq})");
	sleep 0.5;
	is(units($a, 'k'), 150, 'none twice');
	is(units($b, 'k'), 150, 'b still 150');

	my $before = metric($a, 'usage_sync_shipped_total');
	is(post_n($a, 'k', 10), 10, 'a takes new events');
	ok(wait_until(sub { units($b, 'k') == 160 }, 5),
		'as a new origin, which b applies');
	$a->finish();
	$b->finish();
}

###############################################################################
# a stop with events Redis did not take: the queue's place in the state
# file, and the events published again at the restart

{
	$redis->cmd('DEL', 'usage:events');
	my $b = instance('queue-b');
	my $a = instance('queue-a', '',
		'state=%%TESTDIR%%/state/usage.state state_interval=1h');

	is(post_n($a, 'q', 20), 20, '20 events to a');
	ok(wait_until(sub { units($b, 'q') == 20 }, 5), 'b has them');

	my $until = time() + 6;
	is($redis->cmd('CLIENT', 'PAUSE', '6000', 'ALL'), 'OK',
		'Redis answers nothing for 6 s');
	is(post_n($a, 'q', 30), 30, '30 more to a meanwhile');
	$a->stop();
	ok(!$a->alive, 'a stopped with them in its queue');
	my $saved = Test::UsageState::parse($a->read_file('state/usage.state'));
	cmp_ok($saved->{fleet}{queued_from}, '>', 0,
		'the state file says where the queue starts');

	sleep 0.1 while time() < $until + 0.2;
	$a->run();
	ok(sync_ok($a), 'a restarted from its state file');
	ok(wait_until(sub { units($b, 'q') == 50 }, 10),
		'b counts all 50: the queue was published again')
		or diag(units($b, 'q'));
	sleep 0.5;
	is(units($b, 'q'), 50, 'none twice on b');
	is(units($a, 'q'), 50, 'a has its 50');
	cmp_ok(metric($a, 'usage_sync_republished_total'), '>=', 30,
		'counted as published again');
	$a->finish();
	$b->finish();
}

done_testing();

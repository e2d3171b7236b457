#!/usr/bin/perl

# usage_sync replicas=1 (WAIT): a batch leaves the ship queue only once a
# replica has it, so that a failover to that replica loses no event the
# queue let go.  Real redis-servers on free loopback ports, a primary and
# its replica:
#   - events ship as usual while the replica keeps up;
#   - the replica cut off from the primary (promoted while the primary
#     still runs, as a failover that the primary does not know of yet):
#     the POSTs still answer 201, the batches are in the primary but stay
#     queued, one [warn] says why;
#   - the primary killed then, and its address given to a Redis that
#     holds the promoted replica's data (what a managed Redis's failover
#     does with its name): the instance sends those batches again, and an
#     instance that joins afterwards, reading the stream from its start,
#     counts every event the first one took.  Without replicas= the same
#     run loses the batches the replica never had (checked by hand: the
#     queue lets them go as soon as the primary has them).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Test::UsageFleet qw(metric sync_instance);
use Time::HiRes qw(sleep time);

my $primary = Test::UsageRedis->new();
my $replica = Test::UsageRedis->new(
	args => [ '--replicaof', '127.0.0.1', $primary->port ]);

sub linked {
	my ($r) = @_;
	return wait_until(sub {
		(($r->cmd('INFO', 'replication') // '') =~ /master_link_status:up/)
	}, 10);
}

ok(linked($replica), 'the replica follows the primary');

sub conf {
	my ($name, $extra) = @_;
	my $addr = $primary->addr;
	return <<"EOF";
http {
    usage_zone zone=usage:4m;
    usage_sync zone=usage redis=$addr name=$name interval=200ms $extra;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub instance {
	my ($name, @conf) = @_;
	return sync_instance($name, conf($name, @conf));
}

sub units {
	my ($t) = @_;
	return (($t->get('/v1/usage/r')->json // {})->{data}{byEventType}{unit})
		// 0;
}

sub post_n {
	my ($t, $n) = @_;
	my $ok = 0;
	for (1 .. $n) {
		$ok++ if $t->post_json('/v1/events',
			{ entityId => 'r', eventType => 'unit' })->status == 201;
	}
	return $ok;
}

my $a = instance('a', 'replicas=1');

is(post_n($a, 20), 20, '20 events to a');
ok(wait_until(sub { metric($a, 'usage_sync_queued') == 0 }, 5),
	'with the replica up they leave the queue');
ok(wait_until(sub {
	($replica->cmd('XLEN', 'usage:events') // 0)
		== ($primary->cmd('XLEN', 'usage:events') // -1)
}, 5), 'the replica has every entry');

###############################################################################
# the replica cut off: batches in the primary only stay queued

is($replica->cmd('REPLICAOF', 'NO', 'ONE'), 'OK',
	'the replica is promoted, cut off from the primary');
my $len = $primary->cmd('XLEN', 'usage:events');
is(post_n($a, 10), 10, '10 more, on the primary alone: still 201');
ok(wait_until(sub {
	($primary->cmd('XLEN', 'usage:events') // 0) > $len
}, 5), 'the primary has their batches');
sleep 1.5;
cmp_ok(metric($a, 'usage_sync_queued'), '>=', 10,
	'but they stay queued: no replica has them');
like($a->read_file('error.log'),
	qr/\[warn\].*usage sync: redis \S+ has a batch on 0 of the 1 replicas of replicas= after \d+ ms: it stays queued until they have it/,
	'a [warn] says why');

###############################################################################
# the primary dies; the promoted replica, without those batches, takes
# its place

$primary->kill();

# the primary's address, now served with the replica's data
my $moved = Test::UsageRedis->new(port => $primary->port,
	args => [ '--replicaof', '127.0.0.1', $replica->port ]);
ok(linked($moved), 'a Redis on the old address copies the promoted one');
is($moved->cmd('REPLICAOF', 'NO', 'ONE'), 'OK', 'and takes over from it');
is($replica->cmd('REPLICAOF', '127.0.0.1', $moved->port), 'OK',
	'which becomes its replica');
ok(linked($replica), 'the new replica follows');

ok(wait_until(sub { metric($a, 'usage_sync_queued') == 0 }, 15),
	'a sends the batches the failover lost again: its queue drains');

my $b = instance('b', 'replicas=1');
ok(wait_until(sub { units($b) == 30 }, 10),
	'b, joining after the failover, counts all 30 events of a')
	or diag(units($b));
sleep 0.5;
is(units($b), 30, 'none twice');
is(units($a), 30, 'a has its 30');

$b->finish();
$a->finish();

done_testing();

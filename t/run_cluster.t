#!/usr/bin/perl

# INSTANCES=3 scripts/run.sh (README, "Running several instances"): a
# redis-server and three instances of the shipped configuration with a
# usage_sync line, on $PORT, $PORT+1, $PORT+2; an event POSTed to the
# first counts on the third, read with its position; /ready says sync ok
# everywhere; each runs conf/nginx.cluster.conf with its Redis, name and
# port, and one cursor key for all, so a cursor of one works on another;
# conf/nginx.cluster.conf is conf/nginx.conf and the fleet's lines;
# SIGTERM stops all of them and Redis.  With REDIS=host:port
# the instances use that Redis, which is left running.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);
use File::Temp qw(tempdir);
use Test::UsageRedis;

my $root = "$FindBin::Bin/..";

# the script runs the normal build; a sanitizer run tests its own .so
plan skip_all => 'runs the normal build only'
	if ($ENV{USAGE_MODULE} // '') =~ m{/asan/};

my $t = Test::Usage->new();

sub port_free {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
		LocalPort => $port, Proto => 'tcp', Listen => 1, ReuseAddr => 1);
	return 0 unless $s;
	close $s;
	return 1;
}

# three free ports in a row
my $base;
for (1 .. 50) {
	my $p = $t->free_port();
	next if $p > 65000;
	if (port_free($p + 1) && port_free($p + 2)) { $base = $p; last }
}
ok($base, 'three free ports');
my $redis_port = $t->free_port();

my $prefix = tempdir('usage-cluster-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
	open STDOUT, '>', "$prefix/out.log";
	open STDERR, '>&', \*STDOUT;
	$ENV{INSTANCES} = 3;
	$ENV{PORT} = $base;
	$ENV{REDIS_PORT} = $redis_port;
	$ENV{WORKERS} = 2;
	$ENV{USAGE_PREFIX} = $prefix;
	exec "$root/scripts/run.sh" or POSIX::_exit(127);
}

for my $i (0 .. 2) {
	ok(wait_until(sub {
		my $r = $t->get('/ready', port => $base + $i);
		(($r->json // {})->{checks}{sync} // '') eq 'ok';
	}, 60), "instance " . ($i + 1) . " is up, sync ok")
		or diag(Test::Usage::slurp("$prefix/out.log"));
}

my $r = $t->request('POST', '/v1/events', port => $base,
	body => '{"entityId":"c1","eventType":"call"}',
	headers => ['Content-Type' => 'application/json']);
is($r->status, 201, 'a POST to the first instance');
my $pos = $r->header('X-Usage-Position');
like($pos // '', qr/^[0-9a-f]{16}:1$/, "its position $pos");
my $g = $t->get('/v1/usage/c1', port => $base + 2,
	headers => ['X-Usage-Position' => $pos]);
is(($g->json // {})->{data}{totalEvents}, 1, 'counted by the third');
is($g->header('X-Usage-Position-Reached'), 'true', 'which says so');

# a cursor that one instance gives is taken by another: the same key
my $list = $t->get('/v1/events?limit=1&cursor=', port => $base)->json // {};
my $cursor = $list->{data}{pagination}{nextCursor};
ok($cursor, 'the first instance gives a cursor');
is($t->get("/v1/events?limit=1&cursor=$cursor", port => $base + 1)->status,
	200, 'the second takes it: the fleet shares one cursor key');

my $shipped = Test::Usage::slurp("$root/conf/nginx.cluster.conf");
for my $i (1 .. 3) {
	my $conf = Test::Usage::slurp("$prefix/i$i/conf/nginx.conf");
	like($conf, qr/^    usage_sync zone=usage redis=127\.0\.0\.1:$redis_port name=i$i;$/m,
		"i$i: its configuration has the usage_sync line");
	(my $as_shipped = $conf) =~ s/^    usage_sync .*$/    usage_sync zone=usage redis=127.0.0.1:6379;/m;
	$as_shipped =~ s/^worker_processes .*;$/worker_processes auto;/m;
	$as_shipped =~ s/^(\s+listen 127\.0\.0\.1:)\d+;$/${1}8080;/m;
	is($as_shipped, $shipped, "i$i: it is conf/nginx.cluster.conf otherwise");
	is(Test::Usage::slurp("$prefix/i$i/conf/cursor.key"),
		Test::Usage::slurp("$prefix/cursor.key"), "i$i: the fleet's cursor key");
	is(join("\n", grep { /\[(alert|crit|emerg)\]/ }
		split /\n/, Test::Usage::slurp("$prefix/i$i/logs/error.log")), '',
		"i$i: no alert in its error.log");
}

kill 'TERM', $pid;
ok(wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 20), 'SIGTERM stops it');
ok(wait_until(sub {
	!grep { !port_free($_) } $base, $base + 1, $base + 2, $redis_port
}, 10), 'the instances and Redis are gone');

###############################################################################
# the shipped example: conf/nginx.conf and the fleet's lines, nothing else

{
	my ($plain, $cluster) = map { Test::Usage::slurp("$root/conf/$_") }
		qw(nginx.conf nginx.cluster.conf);
	s/\A(#[^\n]*\n)+// for $plain, $cluster;      # the header comments
	my $fleet = qr/\n    # the fleet: .*?\n    usage_sync zone=usage redis=127\.0\.0\.1:6379;\n/s;
	like($cluster, $fleet, 'conf/nginx.cluster.conf has the fleet\'s lines');
	(my $rest = $cluster) =~ s/$fleet/\n/;
	$rest =~ s/\n\n\n/\n\n/;
	is($rest, $plain, 'and is conf/nginx.conf otherwise');
}

###############################################################################
# REDIS=host:port: a Redis of the user's

my $redis = Test::UsageRedis->new();
my $prefix2 = tempdir('usage-cluster-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
$pid = fork() // die "fork: $!";
if ($pid == 0) {
	open STDOUT, '>', "$prefix2/out.log";
	open STDERR, '>&', \*STDOUT;
	$ENV{INSTANCES} = 2;
	$ENV{PORT} = $base;
	$ENV{REDIS} = $redis->addr;
	$ENV{WORKERS} = 1;
	$ENV{USAGE_PREFIX} = $prefix2;
	exec "$root/scripts/run.sh" or POSIX::_exit(127);
}

for my $i (0 .. 1) {
	ok(wait_until(sub {
		my $r = $t->get('/ready', port => $base + $i);
		(($r->json // {})->{checks}{sync} // '') eq 'ok';
	}, 60), "REDIS=: instance " . ($i + 1) . " is up, sync ok")
		or diag(Test::Usage::slurp("$prefix2/out.log"));
}
is($t->request('POST', '/v1/events', port => $base + 1,
	body => '{"entityId":"c2","eventType":"call"}',
	headers => ['Content-Type' => 'application/json'])->status, 201,
	'a POST to the second instance');
ok(wait_until(sub {
	($redis->cmd('XLEN', 'usage:events') // 0) >= 1
}, 5), 'its event is in the stream of the Redis named');
ok(!-d "$prefix2/redis", 'no redis-server of its own');

kill 'TERM', $pid;
ok(wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 20), 'SIGTERM stops it');
is($redis->cmd('PING'), 'PONG', 'the Redis named is left running');

done_testing();

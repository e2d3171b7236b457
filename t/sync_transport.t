#!/usr/bin/perl

# usage_sync, its transport (issue 12, step a), against a real
# redis-server on a free loopback port (Test::UsageRedis; the test fails
# if Redis cannot start):
#   - one worker of the two holds the zone's one connection, named
#     usage:<name>; /ready says "sync":"ok", /info and /metrics say how;
#   - Redis stopped: /ready stays 200 with "sync":"degraded", the API
#     answers from the zone, one [error] and one [warn] are logged, not
#     one per attempt; Redis back: "ok" again, without a restart;
#   - the holding worker killed: another takes over; a reload hands the
#     connection to a worker of the new cycle, and a graceful stop leaves
#     no socket open (no [alert]);
#   - a wrong password, or none where one is needed: nginx starts, the
#     sync is degraded, the refusal is one [error]; TLS with a trusted
#     certificate works, with an untrusted one it is refused;
#   - a Redis that answers garbage, too long an array, closes mid-reply or
#     never answers: an [error] naming it, degraded, no crash;
#   - configuration errors are [emerg]s that say what is wrong.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(wait_until);
use Test::UsageRedis;
use Time::HiRes qw(sleep time);

sub conf {
	my ($sync) = @_;
	return <<"EOF";
http {
    usage_zone zone=usage:1m;
    usage_sync zone=usage $sync;

    server {
        listen 127.0.0.1:%%PORT%%;
        location / { usage_api usage; }
        location = /metrics { usage_metrics usage; }
    }
}
EOF
}

sub ready { my ($t) = @_; return $t->get('/ready')->json // {} }
sub sync_of { my ($t) = @_; return ($t->get('/info')->json // {})->{sync} // {} }

sub sync_is {
	my ($t, $state, $timeout) = @_;
	return wait_until(sub { (ready($t)->{checks}{sync} // '') eq $state },
		$timeout // 8);
}

sub count_lines {
	my ($t, $re) = @_;
	return scalar grep { /$re/ } split /\n/, $t->read_file('error.log');
}

sub clients_named {
	my ($redis, $name) = @_;
	my $list = $redis->cmd('CLIENT', 'LIST') // '';
	return scalar grep { /\bname=\Q$name\E(?:\s|$)/ } split /\n/, $list;
}

###############################################################################
# connected, then Redis down and back

{
	my $redis = Test::UsageRedis->new();
	my $t = Test::Usage->new();
	$t->write_config(conf('redis=127.0.0.1:' . $redis->port
		. ' name=t1 interval=200ms'))->run();

	ok(sync_is($t, 'ok'), '/ready says sync ok once connected');
	my $r = $t->get('/ready');
	is($r->status, 200, '/ready is 200');

	my $s = sync_of($t);
	is($s->{state}, 'ok', '/info: state ok');
	is($s->{instance}, 't1', '/info: the instance name');
	is($s->{redis}, '127.0.0.1:' . $redis->port, '/info: the redis address');
	is($s->{stream}, 'usage:events', '/info: the default stream');
	cmp_ok($s->{connects}, '>=', 1, '/info: connects counted');
	like($s->{since}, qr/^\d{4}-\d\d-\d\dT/, '/info: since is a time');
	my %workers = map { $_ => 1 } $t->worker_pids;
	ok($workers{ $s->{worker} }, 'the connection is held by a worker');

	ok(wait_until(sub { clients_named($redis, 'usage:t1') == 1 }),
		'one connection to redis for two workers, named usage:t1');

	my $m = $t->get('/metrics')->body;
	like($m, qr/^usage_sync_up\{zone="usage"\} 1$/m, 'metrics: up 1');
	like($m, qr/^usage_sync_connects_total\{zone="usage"\} [1-9]/m,
		'metrics: connects');
	like($m, qr/^usage_sync_round_trip_seconds\{zone="usage"\} [0-9.]+$/m,
		'metrics: round trip');
	$t->promtool_check($m);

	$redis->stop();
	ok(sync_is($t, 'degraded'), 'redis stopped: degraded');
	is($t->get('/ready')->status, 200, 'degraded is still ready');
	is($t->post_event('e1', 'api_call')->status,
		201, 'a POST is stored while redis is down');
	is($t->get('/v1/usage/e1')->json->{data}{totalEvents}, 1,
		'and read back from the zone');
	sleep 1.5;      # several attempts to reconnect
	is(count_lines($t, qr/\[warn\].*usage sync: .*degraded/), 1,
		'one [warn] says it is degraded');
	is(count_lines($t, qr/\[error\].*usage sync: redis/), 1,
		'one [error] for the lost connection, none per attempt');
	like($t->get('/metrics')->body, qr/^usage_sync_up\{zone="usage"\} 0$/m,
		'metrics: up 0');

	$redis->restart();
	ok(sync_is($t, 'ok', 10), 'redis back: ok again, no restart of nginx');
	$s = sync_of($t);
	cmp_ok($s->{connects}, '>=', 2, 'connects grew');
	cmp_ok($s->{failures}, '>=', 1, 'failures counted');
	like($t->get('/metrics')->body,
		qr/^usage_sync_failures_total\{zone="usage"\} [1-9]/m,
		'metrics: failures');

	# the worker holding the connection killed: another one takes the
	# lease over (its holder is gone) and connects
	$t->allow_emerg(qr/\[alert\] .*worker process \d+ exited on signal 9/);
	my $victim = sync_of($t)->{worker};
	ok(kill('KILL', $victim), 'the holding worker killed');
	ok(wait_until(sub {
		my $w = sync_of($t)->{worker} // 0;
		$w && $w != $victim && sync_of($t)->{state} eq 'ok';
	}, 5), 'another worker holds the connection');
	ok(wait_until(sub { clients_named($redis, 'usage:t1') == 1 }, 5),
		'one connection again');

	# a reload: the new cycle's worker takes the connection over
	my $old = sync_of($t)->{worker};
	$t->reload();
	my %new;
	ok(wait_until(sub {
		%new = map { $_ => 1 } $t->worker_pids;
		my $w = sync_of($t)->{worker} // 0;
		$w && $w != $old && $new{$w} && sync_of($t)->{state} eq 'ok';
	}, 10), 'after a reload a new worker holds the connection');
	ok(wait_until(sub { clients_named($redis, 'usage:t1') == 1 }, 5),
		'and only it: the old one let go');

	$t->finish();
	ok(wait_until(sub { clients_named($redis, 'usage:t1') == 0 }, 5),
		'a graceful stop closes the connection');
}

###############################################################################
# credentials

{
	my $redis = Test::UsageRedis->new(password => 'sekret-sekret');
	my $port = $redis->port;

	my $t = Test::Usage->new();
	$t->write_config(conf("redis=127.0.0.1:$port name=t2 "
		. 'password=wrong-wrong interval=200ms'))->run();
	ok(sync_is($t, 'degraded'), 'a wrong password: started, degraded');
	is($t->get('/ready')->status, 200, 'and ready');
	sleep 1;
	is(count_lines($t, qr/\[error\].*refused the credentials: WRONGPASS/), 1,
		'one [error] says the credentials were refused');
	$t->finish();

	$t = Test::Usage->new();
	$t->write_config(conf("redis=127.0.0.1:$port name=t3 interval=200ms"))
		->run();
	ok(sync_is($t, 'degraded'), 'no password where one is needed: degraded');
	ok(wait_until(sub { count_lines($t, qr/\[error\].*NOAUTH/) == 1 }),
		'one [error] says NOAUTH');
	$t->finish();

	$t = Test::Usage->new();
	$t->write_config(conf("redis=127.0.0.1:$port name=t4 "
		. 'password=sekret-sekret interval=200ms'))->run();
	ok(sync_is($t, 'ok'), 'the right password: ok');
	$t->finish();

	my $acl = Test::UsageRedis->new(user => 'usage', password => 'acl-secret');
	$t = Test::Usage->new();
	$t->write_config(conf('redis=127.0.0.1:' . $acl->port
		. ' name=t5 user=usage password=acl-secret interval=200ms'))->run();
	ok(sync_is($t, 'ok'), 'an ACL user and its password: ok');
	ok(wait_until(sub { ($acl->cmd('CLIENT', 'LIST') // '')
		=~ /name=usage:t5 .*user=usage/ }), 'connected as that user');
	$t->finish();
}

###############################################################################
# TLS

{
	my $redis = Test::UsageRedis->new(tls => 1);
	my $port = $redis->port;
	my $ca = $redis->ca;

	my $t = Test::Usage->new();
	$t->write_config(conf("redis=localhost:$port tls tls_trusted=$ca "
		. 'name=t6 interval=200ms'))->run();
	ok(sync_is($t, 'ok'), 'TLS with the trusted certificate: ok');
	$t->finish();

	$t = Test::Usage->new();
	$t->write_config(conf("redis=localhost:$port tls name=t7 "
		. 'interval=200ms'))->run();
	ok(sync_is($t, 'degraded'), 'TLS with an untrusted certificate: degraded');
	ok(wait_until(sub {
		count_lines($t, qr/\[error\].*certificate verify error/) >= 1 }),
		'the certificate error is logged');
	$t->finish();

	$t = Test::Usage->new();
	$t->write_config(conf("redis=127.0.0.1:$port name=t8 "
		. 'interval=200ms timeout=300ms'))->run();
	ok(sync_is($t, 'degraded'), 'plain TCP to a TLS port: degraded');
	$t->finish();
}

###############################################################################
# a Redis that does not speak Redis

for my $case (
	[ 'garbage', sub { "!garbage\r\n" }, qr/sent what is not a reply/ ],
	[ 'too long an array', sub { "*99999999\r\n" },
		qr/an array longer than allowed/ ],
	[ 'closed mid-reply', sub { [ 'close', '$10' . "\r\nabc" ] },
		qr/redis closed the connection/ ],
	[ 'never answers', sub { [ 'sleep', 60, '' ] }, qr/no reply in time/ ],
	# an epoch, the answer to the first command (SET NX GET), twice
	[ 'a reply nobody asked for',
		sub { "\$16\r\n0123456789abcdef\r\n" x 2 },
		qr/a reply nobody asked for/ ],
) {
	my ($name, $answer, $re) = @$case;
	my $fake = Test::UsageRedis::Fake->new(handler => $answer);
	my $t = Test::Usage->new();
	$t->write_config(conf('redis=127.0.0.1:' . $fake->port
		. ' name=f interval=200ms timeout=300ms'))->run();
	ok(sync_is($t, 'degraded'), "$name: degraded");
	ok(wait_until(sub { count_lines($t, $re) >= 1 }), "$name: logged");
	is($t->post_event('x', 'y')->status, 201,
		"$name: the API still answers");
	my @alive = grep { kill 0, $_ } $t->worker_pids;
	is(scalar @alive, 2, "$name: both workers alive");
	$t->finish();
	$fake->stop();
}

###############################################################################
# configuration errors

{
	my $t = Test::Usage->new();
	my $cf = sub {
		my ($http) = @_;
		return "http {\n    usage_zone zone=usage:1m;\n    $http\n"
			. "    server { listen 127.0.0.1:%%PORT%%;"
			. " location / { usage_api usage; } }\n}\n";
	};
	for my $case (
		[ 'usage_sync redis=127.0.0.1:6379;', qr/needs zone= and redis=/,
			'no zone=' ],
		[ 'usage_sync zone=usage name=x;', qr/needs zone= and redis=/,
			'no redis=' ],
		[ 'usage_sync zone=nosuch redis=127.0.0.1:6379;',
			qr/usage zone "nosuch" is unknown/, 'an unknown zone' ],
		[ 'usage_sync zone=usage redis=127.0.0.1;', qr/is not host:port/,
			'no port' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 colour=red;',
			qr/invalid parameter "colour=red"/, 'an unknown parameter' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 interval=abc;',
			qr/invalid time in "interval=abc"/, 'a bad interval' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 replicas=17;',
			qr/invalid parameter "replicas=17" of usage_sync/, 'too many replicas' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 replicas=one;',
			qr/invalid parameter "replicas=one" of usage_sync/, 'replicas= not a number' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 ack=always;',
			qr/invalid parameter "ack=always" of usage_sync/, 'ack= neither redis nor local' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 ack=redis ack_timeout=0;',
			qr/invalid time in "ack_timeout=0"/, 'ack_timeout=0' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 snapshot=sometimes;',
			qr/invalid time in "snapshot=sometimes"/, 'a bad snapshot interval' ],
		[ 'usage_sync zone=usage redis=127.0.0.1:6379 stream=' . ('s' x 257) . ';',
			qr/stream= takes 256 bytes at most/, 'a stream name too long' ],
		[ "usage_sync zone=usage redis=127.0.0.1:6379;\n"
			. '    usage_sync zone=usage redis=127.0.0.1:6380;',
			qr/has a usage_sync already/, 'two for one zone' ],
		[ 'usage_sync zone=usage redis=no-such-host.invalid:6379;',
			qr/could not be resolved/, 'an unresolvable name' ],
	) {
		my ($http, $re, $name) = @$case;
		my ($code, $out) = $t->check_config($cf->($http));
		isnt($code, 0, "$name: nginx -t fails");
		like($out, qr/\[emerg\].*$re/, "$name: says why") or diag $out;
	}

	my ($code, $out) = $t->check_config($cf->(
		'usage_sync zone=usage redis=127.0.0.1:6379 name=a stream=s:e '
		. 'interval=2s timeout=1s connect_timeout=1s user=u password=p '
		. 'replicas=2 ack=redis ack_timeout=500ms snapshot=30s;'));
	is($code, 0, 'every parameter: nginx -t passes') or diag $out;
}

done_testing();

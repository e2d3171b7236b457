#!/usr/bin/perl

# The Redis helpers of the sync tests (t/lib/Test/UsageRedis.pm), before
# any test relies on them: a real redis-server on a free loopback port
# answers PING, SET/GET (binary-safe), XADD/XRANGE and INFO through cmd(),
# with no persistence and bound to 127.0.0.1; with a password or an ACL
# user, a connection without AUTH gets NOAUTH and a wrong one WRONGPASS;
# with TLS, redis-cli --tls and cmd() work and a plain connection gets no
# reply; restart() is an empty Redis on the same port; stop() and kill()
# end the process; a server that cannot start (its port taken) makes new()
# die with its log, and a test that tries it fails; the end of a test
# stops its servers after its nginx.  The fake answers
# the handler's bytes, closes, resets, delays one connection without
# delaying another, and logs every command.

use strict;
use warnings;

use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;
use Test::More;
use Test::Usage qw(wait_until alive);
use Test::UsageRedis qw(resp_cmd resp_status resp_error resp_int
	resp_bulk resp_nil resp_array redis_error);
use Time::HiRes qw(sleep time);

my $LIB = "$FindBin::Bin/lib";

sub refused {
	my ($port) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
		PeerPort => $port, Proto => 'tcp', Timeout => 2);
	return !$s;
}

# a test script run by a perl in a child, with the harness: (exit
# status, output)
my $SCRIPTS = tempdir('usage-redis-harness-XXXXXXXX', TMPDIR => 1,
	CLEANUP => 1);
my $scripts = 0;
sub perl_child {
	my ($code) = @_;
	my $file = "$SCRIPTS/child-" . ++$scripts . '.t';
	open my $fh, '>', $file or die "$file: $!";
	print $fh "use strict; use warnings; use lib '$LIB';\n$code";
	close $fh;
	my $out = `$^X $file 2>&1`;
	return ($?, $out);
}

###############################################################################
# a plain Redis

my $r = Test::UsageRedis->new();
ok($r->port > 0 && $r->port != 6379, 'a port of its own (' . $r->port . ')');
ok(alive($r->pid), 'redis-server running (pid ' . $r->pid . ')');
is($r->addr, '127.0.0.1:' . $r->port, 'addr');
is($r->cmd('PING'), 'PONG', 'PING');
is($r->cmd('SET', 'k', 'v'), 'OK', 'SET');
is($r->cmd('GET', 'k'), 'v', 'GET');
is($r->cmd('GET', 'nothing'), undef, 'GET of a missing key: nil is undef');
is($r->cmd('INCR', 'n'), 1, 'INCR: an integer');
my $bin = "a\r\nb\0c\xff" . ('x' x 70000);
is($r->cmd('SET', 'bin', $bin), 'OK', 'SET of a binary 70 kB value');
ok($r->cmd('GET', 'bin') eq $bin, 'GET gives the same bytes back');

my $e = $r->cmd('INCR', 'k');
ok(redis_error($e), 'an error reply is a Test::UsageRedis::Error');
is($e->code, 'ERR', 'its code');
like($e->{error}, qr/not an integer/, 'its message in {error}');
like("$e", qr/^\(error\) ERR /, 'printed as redis-cli prints it');
ok(!$e->io, 'a reply, not a failed connection');

my $id1 = $r->cmd('XADD', 'usage:events', '*', 'o', 'a', 's', '1');
like($id1, qr/^\d+-\d+\z/, "XADD answers an id ($id1)");
my $id2 = $r->cmd('XADD', 'usage:events', '*', 'o', 'b', 's', '2');
is_deeply($r->cmd('XRANGE', 'usage:events', '-', '+'),
	[[$id1, ['o', 'a', 's', '1']], [$id2, ['o', 'b', 's', '2']]],
	'XRANGE: nested arrays');
is_deeply($r->cmd('XRANGE', 'nostream', '-', '+'), [], 'an empty array');
is($r->cmd('XREAD', 'BLOCK', 100, 'STREAMS', 'usage:events', '$'), undef,
	'XREAD BLOCK that times out: nil array is undef');

my $info = $r->info;
like($info->{redis_version} // '', qr/^\d+\.\d+/,
	"INFO parsed (redis_version $info->{redis_version})");
is($info->{tcp_port}, $r->port, 'INFO tcp_port is the port');
is($info->{aof_enabled}, 0, 'no append-only file');
is_deeply($r->cmd('CONFIG', 'GET', 'save'), ['save', ''], 'no RDB saves');
is_deeply($r->cmd('CONFIG', 'GET', 'bind'), ['bind', '127.0.0.1'],
	'bound to 127.0.0.1');
is($r->info('keyspace')->{db0} =~ /^keys=(\d+)/ ? $1 : undef, 4,
	'INFO keyspace: 4 keys');

# one connection, pipelined
my $c = $r->connect();
$c->send_raw(resp_cmd('INCR', 'p') . resp_cmd('INCR', 'p')
	. resp_cmd('GET', 'p'));
is_deeply([map { $c->read_reply } 1 .. 3], [1, 2, '2'],
	'a connection: three pipelined commands, three replies in order');
my $t0 = time();
my $to = $c->read_reply(0.3);
ok(redis_error($to) && $to->io && $to->message eq 'timeout'
	&& time() - $t0 >= 0.25, 'read_reply with nothing to read: timeout');
$c->close();

# DEBUG SLEEP is allowed from here: how a test makes Redis slow
$t0 = time();
is($r->cmd('DEBUG', 'SLEEP', '0.3'), 'OK', 'DEBUG SLEEP allowed');
ok(time() - $t0 >= 0.25, 'and it sleeps');

my ($st, $out) = $r->cli('PING');
is($st, 0, 'redis-cli exits 0');
is($out, "PONG\n", 'redis-cli PING');

###############################################################################
# restart, stop, kill

my ($port, $pid) = ($r->port, $r->pid);
$r->restart();
is($r->port, $port, 'restart: the same port');
isnt($r->pid, $pid, 'a new process');
ok(!alive($pid), 'the old one is gone');
is($r->cmd('GET', 'k'), undef, 'restart: the key is gone');
is($r->cmd('DBSIZE'), 0, 'an empty Redis');
is($r->cmd('XLEN', 'usage:events'), 0, 'the stream too');
like($r->server_log, qr/Ready to accept connections.*Ready to accept/s,
	'the log holds both runs');

$pid = $r->pid;
$r->stop();
ok(!alive($pid), 'stop: the process is gone');
is($r->pid, undef, 'no pid');
ok(!$r->running, 'not running');
is($r->exit_status, 0, 'exited with status 0 (SIGTERM: a shutdown)');
ok(refused($port), 'the port refuses connections');
my $down = $r->cmd('PING');
ok(redis_error($down) && $down->io, "cmd() to a stopped Redis: $down");

$r->start();
is($r->cmd('PING'), 'PONG', 'start again: PING');
is($r->port, $port, 'on the same port');
$pid = $r->pid;
$r->kill();
ok(!alive($pid), 'kill: the process is gone');
is($r->exit_status & 127, 9, 'killed by signal 9');
ok(refused($port), 'the port refuses connections');
$r->start();
is($r->cmd('PING'), 'PONG', 'and starts again after a kill');

###############################################################################
# password, ACL user

my $p = Test::UsageRedis->new(password => 'pa ss');
is($p->cmd('PING'), 'PONG', 'password: cmd() authenticates');
my $noauth = $p->connect(auth => 0);
my $reply = $noauth->cmd('PING');
is(redis_error($reply) && $reply->code, 'NOAUTH',
	"password: a command without AUTH: $reply");
$reply = $noauth->cmd('AUTH', 'wrong');
is(redis_error($reply) && $reply->code, 'WRONGPASS', "wrong password: $reply");
is($noauth->cmd('AUTH', 'pa ss'), 'OK', 'AUTH with the password');
is($noauth->cmd('GET', 'x'), undef, 'then commands work');
$noauth->close();
($st, $out) = $p->cli('PING');
is($out, "PONG\n", 'redis-cli with the password');
$p->restart();
is($p->cmd('PING'), 'PONG', 'a restart keeps the password');
$reply = $p->connect(auth => 0)->cmd('PING');
is(redis_error($reply) && $reply->code, 'NOAUTH', 'and requires it');

my $u = Test::UsageRedis->new(user => 'usage', password => 's3cret');
is($u->cmd('ACL', 'WHOAMI'), 'usage', 'ACL user: cmd() is that user');
is($u->cmd('XADD', 's', '*', 'f', 'v') =~ /^\d+-\d+\z/ ? 1 : 0, 1,
	'with all permissions (XADD)');
is($u->cmd('EVAL', 'return 1', 0), 1, '(EVAL)');
$noauth = $u->connect(auth => 0);
$reply = $noauth->cmd('PING');
is(redis_error($reply) && $reply->code, 'NOAUTH',
	"ACL user: a command without AUTH: $reply");
$reply = $noauth->cmd('AUTH', 's3cret');
is(redis_error($reply) && $reply->code, 'WRONGPASS',
	'the password alone (the default user) is refused');
$reply = $noauth->cmd('AUTH', 'usage', 'wrong');
is(redis_error($reply) && $reply->code, 'WRONGPASS', 'a wrong password too');
is($noauth->cmd('AUTH', 'usage', 's3cret'), 'OK', 'AUTH user password');
$noauth->close();
($st, $out) = $u->cli('ACL', 'WHOAMI');
is($out, "usage\n", 'redis-cli as the user');
ok(!eval { Test::UsageRedis->new(user => 'x'); 1 }
	&& $@ =~ /needs password/, 'user without password: refused');

###############################################################################
# TLS

my $s = Test::UsageRedis->new(tls => 1, password => 'tls-pw');
ok($s->tls && -f $s->cert && -f $s->key && $s->ca eq $s->cert,
	'TLS: a certificate, its key, the certificate as CA');
is($s->cmd('PING'), 'PONG', 'TLS: cmd() (openssl s_client) PING');
is($s->cmd('SET', 'k', "v\r\n"), 'OK', 'SET');
is($s->cmd('GET', 'k'), "v\r\n", 'GET');
is_deeply($s->cmd('CONFIG', 'GET', 'port'), ['port', '0'],
	'no plain port');
($st, $out) = $s->cli('PING');
is($out, "PONG\n", 'redis-cli --tls --cacert: PONG');
($st, $out) = Test::UsageRedis::_run(Test::UsageRedis::_which('redis-cli'),
	'-h', '127.0.0.1', '-p', $s->port, '--tls', '--insecure',
	'--pass', 'tls-pw', '--no-auth-warning', 'PING');
is($out, "PONG\n", 'redis-cli --tls --insecure: PONG');
my $plain = $s->connect(tls => 0, auth => 0, timeout => 2);
$reply = redis_error($plain) ? $plain : $plain->cmd('PING');
ok(redis_error($reply) && $reply->io && !length($reply->{partial} // ''),
	"a plain connection to the TLS port: no reply ($reply)");
$reply = $s->connect(auth => 0)->cmd('PING');
is(redis_error($reply) && $reply->code, 'NOAUTH',
	'TLS with a password: NOAUTH without AUTH');
$s->restart();
is($s->cmd('GET', 'k'), undef, 'TLS restart: empty');
is($s->cmd('PING'), 'PONG', 'and still TLS');

###############################################################################
# cannot start

my $taken = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Proto => 'tcp', Listen => 1, ReuseAddr => 1) or die "listen: $!";
my $tport = $taken->sockport;
$t0 = time();
my $bad = eval { Test::UsageRedis->new(port => $tport) };
my $err = $@;
ok(!$bad, "port $tport taken: new() dies");
like($err, qr/redis-server did not start on 127\.0\.0\.1:$tport/,
	'saying which server');
like($err, qr/Address already in use/, 'with its log');
ok(time() - $t0 < 5, 'at once (it exited), not after the PING timeout');

($st, $out) = perl_child(<<"CHILD");
use Test::More;
use Test::UsageRedis;
my \$r = Test::UsageRedis->new(port => $tport);
ok(1);
done_testing();
CHILD
isnt($st, 0, 'a test whose Redis cannot start fails (exit status '
	. ($st >> 8) . ')');
unlike($out, qr/^ok 1/m, 'before any test passes');
unlike($out, qr/skip/i, 'it does not skip');

# a free port that another process takes before redis-server binds it
{
	no warnings 'redefine';
	my $free = \&Test::Usage::free_port;
	my @ports = ($tport);
	local *Test::Usage::free_port = sub { @ports ? shift @ports : $free->() };
	my $other = eval { Test::UsageRedis->new() };
	ok($other && $other->port != $tport,
		'a free port lost to another listener: new() takes another one')
		or diag($@);
	is($other && $other->cmd('PING'), 'PONG', 'and answers there');
	$other->stop() if $other;
}

# a server that never answers: new() gives up after its timeout
my $mute = "$SCRIPTS/mute-server";
open my $mfh, '>', $mute or die "$mute: $!";
print $mfh "#!/bin/sh\nexec sleep 30\n";
close $mfh;
chmod 0755, $mute;
$t0 = time();
$bad = eval { Test::UsageRedis->new(server => $mute, timeout => 1) };
$err = $@;
my ($mpid) = $err =~ /no PONG from pid (\d+) after 1 s, killed/;
ok(!$bad && $mpid, 'a server that does not answer: new() dies')
	or diag($err);
ok(time() - $t0 < 3, 'after its timeout (1 s)');
ok($mpid && !alive($mpid), 'and the process is killed');

$bad = eval { Test::UsageRedis->new(server => '/nonexistent/redis-server') };
ok(!$bad && $@ =~ /exited with status 127.*exec \/nonexistent/s,
	'a server binary that is not there: new() dies saying so');
close $taken;

# The end of a test stops its Redis and its fake, after its nginx: a
# syncing nginx must not see its Redis go while it exits.  A server
# outlives its object (a file-scoped "my" is freed before END blocks run).
($st, $out) = perl_child(<<'CHILD');
use Test::More;
use Test::Usage qw(api_conf alive);
use Test::UsageRedis;
my $t = Test::Usage->new();
$t->plan(1);
$t->write_config(api_conf())->run();
my $nginx = $t->master_pid;
my $r = Test::UsageRedis->new();
my $f = Test::UsageRedis::Fake->new(handler => sub { "+OK\r\n" });
{
	my $gone = Test::UsageRedis->new();
	print "gone ", $gone->pid, "\n";
}
print "pids ", $r->pid, " ", $f->pid, "\n";
print "dirs ", $r->dir, " ", $f->dir, "\n";
{
	no warnings 'redefine';
	for my $class (qw(Test::UsageRedis Test::UsageRedis::Fake)) {
		my $stop = $class->can('stop');
		no strict 'refs';
		*{"${class}::stop"} = sub {
			print "stop $class, nginx ",
				(alive($nginx) ? 'running' : 'gone'), "\n"
				if $_[0]{pid};
			$stop->(@_);
		};
	}
}
is($t->get('/health')->status, 200, 'nginx answers');
CHILD
is($st, 0, 'a test with nginx, a Redis and a fake passes')
	or diag($out);
my ($gpid) = $out =~ /^gone (\d+)$/m;
my ($rpid, $fpid) = $out =~ /^pids (\d+) (\d+)$/m;
my @dirs = $out =~ /^dirs (\S+) (\S+)$/m;
ok($gpid && $rpid && $fpid && !grep({ alive($_) } $gpid, $rpid, $fpid),
	'its Redis servers and its fake are stopped at its end');
like($out, qr/^stop Test::UsageRedis, nginx gone$/m,
	'after its nginx stopped');
like($out, qr/^stop Test::UsageRedis::Fake, nginx gone$/m, 'the fake too');
unlike($out, qr/nginx running/, 'none before');
is(scalar(() = $out =~ /^stop Test::UsageRedis,/mg), 2,
	'also the one whose object went away before');
ok(@dirs == 2 && !grep({ -d } @dirs), 'their temp dirs removed');

###############################################################################
# the fake

my %kv = (foo => 'bar');
my $f = Test::UsageRedis::Fake->new(handler => sub {
	my ($args, $ctx) = @_;
	my ($name, @rest) = @$args;
	$name = uc $name;
	return resp_status('PONG') if $name eq 'PING';
	return resp_bulk($kv{ $rest[0] }) if $name eq 'GET';
	return resp_array(resp_int(1), resp_bulk('two'), resp_nil())
		if $name eq 'MIX';
	return "!garbage\r\n" if $name eq 'GARBAGE';
	return ['close', "\$10\r\nabc"] if $name eq 'CUT';
	return 'close' if $name eq 'CLOSE';
	return 'reset' if $name eq 'RESET';
	return ['sleep', 0.5, resp_status('SLOW')] if $name eq 'SLOW';
	return ['steps', "\$6\r\nab", ['sleep', 0.3, "cdef\r\n"]]
		if $name eq 'HALVES';
	return undef if $name eq 'SILENT';
	return resp_int($ctx->{n}) if $name eq 'N';
	die "boom\n" if $name eq 'DIE';
	return resp_error("ERR unknown command '$name'");
});
ok($f->port > 0, 'fake: a port (' . $f->port . ')');

my $fc = $f->connect(timeout => 2);
is($fc->cmd('PING'), 'PONG', 'fake: the handler answers');
is($fc->cmd('GET', 'foo'), 'bar', 'GET');
is($fc->cmd('GET', 'none'), undef, 'nil');
is_deeply($fc->cmd('MIX'), [1, 'two', undef], 'an array');
$reply = $fc->cmd('NOPE');
is(redis_error($reply) && $reply->code, 'ERR', 'an error reply');
is($fc->cmd('N'), 6, 'the command count of the connection');
$reply = $fc->cmd('DIE');
like("$reply", qr/ERR fake: boom/, 'a handler that dies: an error reply');
$reply = $fc->cmd('SILENT');
ok(redis_error($reply) && $reply->message eq 'timeout', 'no answer: timeout');
$reply = $fc->cmd('GARBAGE');
like(redis_error($reply) && $reply->message, qr/^protocol: not RESP2/,
	'garbage bytes');
$fc->close();

$fc = $f->connect();
$reply = $fc->cmd('CUT');
ok(redis_error($reply) && $reply->message eq 'connection closed'
	&& $reply->{partial} eq "\$10\r\nabc", 'a reply cut by a close');
$fc = $f->connect();
$reply = $fc->cmd('CLOSE');
ok(redis_error($reply) && $reply->message eq 'connection closed',
	'a close instead of a reply');
$fc = $f->connect();
$reply = $fc->cmd('RESET');
ok(redis_error($reply) && $reply->message =~ /^read: .*reset/i,
	"a reset ($reply)");

$fc = $f->connect();
my $fc2 = $f->connect();
$t0 = time();
$fc->send_cmd('SLOW');
$fc->send_cmd('PING');
is($fc2->cmd('PING'), 'PONG', 'a slow answer does not delay another client');
ok(time() - $t0 < 0.45, 'which answers at once');
is($fc->read_reply, 'SLOW', 'the slow answer');
ok(time() - $t0 >= 0.45, 'after the delay');
is($fc->read_reply, 'PONG', 'the next one after it, in order');
$t0 = time();
is($fc->cmd('HALVES'), 'abcdef', 'a reply in two halves, a pause between');
ok(time() - $t0 >= 0.25, 'that waited for its second half');
$fc->send_raw("PING\r\n");
is($fc->read_reply, 'PONG', 'an inline command');
$fc->close();
$fc2->close();

($st, $out) = Test::UsageRedis::_run(Test::UsageRedis::_which('redis-cli'),
	'-h', '127.0.0.1', '-p', $f->port, 'GET', 'foo');
is($out, "bar\n", 'redis-cli talks to the fake');

my $cmds = wait_until { my @l = $f->commands; @l >= 18 ? \@l : undef } 2;
my @names = map { $_->[0] } @{ $cmds || [] };
is_deeply(\@names, [qw(PING GET GET MIX NOPE N DIE SILENT GARBAGE CUT CLOSE
	RESET SLOW PING PING HALVES PING GET)],
	'the log: every command, in order') or diag(explain(\@names));
is_deeply($cmds->[1], ['GET', 'foo'], 'with its arguments');
my @ev = $f->events;
my $conns = grep { ($_->{event} // '') eq 'connect' } @ev;
ok($conns >= 6, "connections logged ($conns)");

my $fakepid = $f->pid;
$f->stop();
ok(!alive($fakepid), 'fake: stop ends its process');
ok(refused($f->port), 'and its port');

done_testing();

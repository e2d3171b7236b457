#!/usr/bin/perl

# The image's runtime stage, as far as a machine without a Docker engine can
# run it: the Dockerfile's own CMD, HEALTHCHECK, STOPSIGNAL and build-time
# "nginx -t", with the image's files (conf/nginx.prod.conf, the shipped
# conf/api-keys, and the module as the image's package installs it:
# scripts/package of the module under test, unpacked with dpkg-deb) under
# a test root instead of /etc, /run, /var, /usr (the substitutions of
# t/lib/Test/UsageProd.pm) and the test's port for 8080,
# run as a non-root user ("nobody" stands for the image's uid 10001 when
# the test runs as root; otherwise as the test's own user).
#
# The configuration check passes as that user; nginx started by CMD runs
# master and workers as that user; the HEALTHCHECK command succeeds; /health
# and /ready answer without a key; the API answers 401 with the image's
# empty key file, and after keys are "mounted" and nginx is reloaded, a POST
# is stored; the access log is JSON on stdout, errors on stderr.  Then the
# README's rolling-deploy stop: the pre-stop hook, run as the user, creates
# the drain file in the run directory; /ready turns 503 "draining" within
# about a second while API requests are still served (each with
# Connection: close); the stop signal arrives while a POST is in flight:
# the POST completes, nginx exits 0, and the state file is saved by that
# user in the state directory; started again, every event is still there
# (and a drain file left in the run directory keeps /ready 503 until it is
# removed: what a container restarted in place, without a tmpfs there,
# would see).

use strict;
use warnings;

use File::Path qw(make_path);
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use Test::More;
use Test::Usage qw(json_decode wait_until);
use Test::UsageProd qw(prod_conf dockerfile runtime_stage instr_args
	json_array build_package);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $t = Test::Usage->new();
my $dir = $t->dir;
my $root = "$dir/root";
my $port = $t->port;
my $repo = $Test::UsageProd::REPO;

my $run = runtime_stage(dockerfile());
my @cmd = json_array((instr_args($run, 'CMD'))[-1] // '');
my ($hc) = instr_args($run, 'HEALTHCHECK');
my @hc = json_array((($hc // '') =~ /\bCMD\s+(\[.*\])\s*$/)[0] // '');
my ($stopsignal) = instr_args($run, 'STOPSIGNAL');
my ($check) = grep { /^nginx -t\b/ } instr_args($run, 'RUN');
plan skip_all => 'the Dockerfile has no CMD, HEALTHCHECK, STOPSIGNAL or '
	. 'nginx -t to run' unless @cmd && @hc && $stopsignal && $check;
$stopsignal =~ s/^SIG//;

# the user: nobody when we can switch to it
my ($as_user, @as);
if ($> == 0) {
	my $setpriv = (grep { -x } '/usr/bin/setpriv', '/bin/setpriv')[0];
	my $gid = getgrnam('nogroup') // getgrnam('nobody');
	if ($setpriv && defined getpwnam('nobody') && defined $gid) {
		$as_user = 'nobody';
		@as = ($setpriv, '--reuid=nobody', "--regid=$gid", '--clear-groups',
			'--');
	}
}
my $uid = $as_user ? getpwnam($as_user) : $>;
diag('running as ' . ($as_user // getpwuid($>) . ' (not root: no user switch)'));

# the image's files, under the test root: the module from its package
my ($pcode, $plog, $deb) = build_package(out => "$dir/package",
	module => $t->module);
is($pcode, 0, 'scripts/package: the image\'s package') or diag $plog;
make_path("$root/image");
ok($deb && system('dpkg-deb', '-x', $deb, "$root/image") == 0,
	'unpacked (dpkg-deb -x)') or do {
	done_testing();
	exit 1;
};
my $module = "$root/image/usr/lib/nginx/modules/ngx_http_usage_module.so";
my $conf = prod_conf(root => $root, port => $port, module => $module);
$t->write_file("$root/etc/nginx.conf", $conf);
$t->write_file("$root/etc/api-keys",
	$t->read_file("$repo/conf/api-keys"));
for my $f ("$dir/stdout.log", "$dir/stderr.log") {
	$t->write_file($f, '');
	chown $uid, -1, $f;    # nginx reopens /dev/stdout as the user (run_as)
}

# the image's paths in a command of the Dockerfile -> the test root's
sub local_args {
	return map {
		my $a = $_;
		$a =~ s{^/etc/nginx-usage/nginx\.conf$}{$root/etc/nginx.conf};
		$a =~ s{127\.0\.0\.1:8080\b}{127.0.0.1:$port};
		$a;
	} @_;
}

my @preload = $ENV{USAGE_NGINX_PRELOAD}
	? ('env', "LD_PRELOAD=$ENV{USAGE_NGINX_PRELOAD}") : ();

# a command as the user; returns (exit code, output).  Its stdout and
# stderr are a file the user owns: nginx reopens /dev/stdout, which works
# when the container runtime gives the container's stdio to its user, as
# runc does (Docker, containerd)
my $runs = 0;
sub run_as {
	my @argv = @_;
	my $file = "$dir/run-as-" . ++$runs . '.out';
	$t->write_file($file, '');
	chown $uid, -1, $file;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', $file;
		open STDERR, '>&', \*STDOUT;
		exec(@as, @argv) or POSIX::_exit(127);
	}
	my $done = wait_until { waitpid($pid, WNOHANG) == $pid } 20;
	unless ($done) {
		kill 'KILL', $pid;
		waitpid($pid, 0);
		return (-1, $t->read_file($file) . ' [killed after 20 s]');
	}
	return ($? >> 8, $t->read_file($file));
}

###############################################################################
# the build-time check, as the user

# (shell form: /bin/sh -c, as Docker runs it)
# (its log file in a directory of the user rather than /tmp)
(my $local_check = $check) =~ s{(?<![\w/])/tmp/}{$root/run/}g;
$local_check =~ s{/etc/nginx-usage/nginx\.conf}{$root/etc/nginx.conf}g;
my ($code, $out) = run_as(@preload, '/bin/sh', '-c', $local_check);
is($code, 0, "the image's nginx -t passes as the user") or diag $out;

# CMD, as the user: the forked child becomes nginx's master (no shell)
sub start {
	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/stdout.log";
		open STDERR, '>>', "$dir/stderr.log";
		exec(@as, @preload, local_args(@cmd)) or POSIX::_exit(127);
	}
	my $up = wait_until {
		return 0 if waitpid($pid, WNOHANG) == $pid;
		my $r = $t->get('/health');
		$r->status == 200;
	} 15;
	return $up ? $pid : undef;
}

sub uid_of {
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return -1;
	my ($u) = join('', <$fh>) =~ /^Uid:\s+(\d+)/m;
	return $u // -1;
}

my $master = start();
ok($master, "CMD (@cmd) starts nginx") or do {
	diag $t->read_file("$dir/stderr.log");
	done_testing();
	exit 1;
};
my @workers = wait_until(sub {
	my @w = $t->worker_pids($master);
	@w ? @w : ();
}, 5);
@workers = $t->worker_pids($master);
ok(@workers >= 1, scalar(@workers) . ' workers (worker_processes auto)');
is(uid_of($master), $uid, 'the master runs as the user');
is(scalar(grep { uid_of($_) == $uid } @workers), scalar @workers,
	'and so do the workers');

SKIP: {
	skip "no $hc[0] here", 1 unless grep { -x "$_/$hc[0]" } split /:/, $ENV{PATH};
	my ($code, $out) = run_as(local_args(@hc));
	is($code, 0, 'the HEALTHCHECK command succeeds') or diag $out;
}

my $r = $t->get('/health');
is($r->status, 200, '/health: 200');
is($r->json && $r->json->{status}, 'healthy', 'healthy');
$r = $t->get('/ready');
is($r->status, 200, '/ready: 200');

# the image ships no keys: the API is closed
$r = $t->get('/v1/usage/stats', headers => ['X-Api-Key' => 'anything']);
is($r->status, 401, 'the image\'s empty key file: 401');
is($r->err->{code}, 'UNAUTHORIZED', 'JSON error');

# keys mounted over api-keys, then a reload (README, "Deploying")
my $key = 'k-docker-1-5a8d1f03c7e9b4a2';
$t->write_file("$root/etc/api-keys",
	"$key  docker-client  docker-client  client\n");
kill 'HUP', $master;
ok(wait_until(sub {
	$t->get('/v1/usage/docker-client', headers => ['X-Api-Key' => $key])
		->status == 200;
}, 10), 'keys mounted and reloaded: accepted');
$r = $t->post_json('/v1/events', { entityId => 'docker-client', eventType => 'run',
	id => 'd-1' }, headers => ['X-Api-Key' => $key,
	'X-Trace-Id' => 'docker-1']);
is($r->status, 201, 'a POST is stored') or diag $r->describe;

my $entry;
wait_until {
	($entry) = grep { ref $_ && ($_->{trace_id} // '') eq 'docker-1' }
		map { json_decode($_) } split /\n/, $t->read_file("$dir/stdout.log");
	$entry;
} 3;
ok($entry, 'the access log on stdout is JSON');
is($entry && $entry->{status}, 201, 'with the status');
unlike($t->read_file("$dir/stderr.log"), qr/^\{/m, 'no access log on stderr');

###############################################################################
# stopping for a rolling deploy (README, "Reloads and rolling deploys")

my %KEY = (headers => ['X-Api-Key' => $key]);
my $drain = "$root/run/drain";    # /run/nginx-usage/drain in the image

# does the server close the connection after a response?
sub closed {
	my ($c) = @_;
	my $sock = $c->sock or return 1;
	return 0 if length $c->{buf};
	return 0 unless IO::Select->new($sock)->can_read(1);
	return !sysread($sock, my $buf, 4096);
}

# 1. pre-stop hook, as the container's user: the drain file
($code, $out) = run_as('touch', $drain);
is($code, 0, 'pre-stop: the user creates the drain file in the run directory')
	or diag $out;
my $t0 = time();
my $draining = wait_until { $t->get('/ready')->status == 503 } 3;
ok($draining, sprintf('pre-stop: /ready 503 within %.2f s', time() - $t0));
sleep 1.1;    # every worker has looked at the file
$r = $t->get('/ready');
is($r->status, 503, 'draining: /ready 503');
is(($r->json // {})->{checks} && $r->json->{checks}{service}, 'draining',
	'draining: checks.service "draining"');
is($t->get('/health')->status, 200, 'draining: /health stays 200 (alive)');

# 2. while the balancer deregisters the task, requests are served
my $c = $t->connect();
$r = $c->request('GET', '/v1/usage/docker-client', keepalive => 1, %KEY);
is($r->status, 200, 'draining: the API still answers');
is($r->header('Connection'), 'close', 'draining: with Connection: close');
ok(closed($c), 'draining: and the connection is closed');
$c->close();
$r = $t->post_json('/v1/events', { entityId => 'docker-client', eventType => 'run',
	id => 'd-2' }, %KEY);
is($r->status, 201, 'draining: a POST is stored');

# 3. the stop signal, with a POST in flight (its body not sent yet)
my $body = '{"entityId":"docker-client","eventType":"run","id":"d-3"}';
my $inflight = $t->connect();
$inflight->send_raw("POST /v1/events HTTP/1.1\r\nHost: localhost\r\n"
	. "X-Api-Key: $key\r\nContent-Type: application/json\r\n"
	. 'Content-Length: ' . length($body) . "\r\n\r\n");
sleep 0.3;
kill $stopsignal, $master;
sleep 0.3;
ok(Test::Usage::alive($master), "SIG$stopsignal: nginx waits for the "
	. 'in-flight request');
$inflight->send_raw($body);
$r = $inflight->read_response('POST');
is($r->status, 201, 'the in-flight POST completes') or diag $r->describe;
is($r->header('Connection'), 'close', 'the in-flight POST: Connection: close');
$inflight->close();

my $gone = wait_until { waitpid($master, WNOHANG) == $master } 15;
ok($gone, "SIG$stopsignal stops nginx");
is($? >> 8, 0, 'exit status 0') if $gone;
kill 'KILL', $master unless $gone;
my @st = stat "$root/state/usage.state";
ok(@st && $st[7] > 0, 'the state file is saved');
is($st[4], $uid, 'by the user');

# started again: the state file restores the store; the drain file is
# still in the run directory (no tmpfs here): not ready until it goes
$master = start();
ok($master, 'started again');
is($t->get('/v1/usage/docker-client', %KEY)->data->{totalEvents}, 3,
	'every event survived the restart, the in-flight one too');
is($t->get('/ready')->status, 503,
	'a drain file left in the run directory: /ready 503');
($code, $out) = run_as('rm', $drain);
is($code, 0, 'the user removes the drain file') or diag $out;
ok((wait_until { $t->get('/ready')->status == 200 } 3),
	'then /ready 200');
kill $stopsignal, $master if $master;
$gone = $master && wait_until { waitpid($master, WNOHANG) == $master } 15;
ok($gone, 'stopped again');
kill 'KILL', $master if $master && !$gone;

my $err = $t->read_file("$dir/stderr.log");
my @bad = grep { /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error:/ }
	split /\n/, $err;
is(join("\n", @bad), '', 'no alert, crit or emerg on stderr');

done_testing();

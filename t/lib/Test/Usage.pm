package Test::Usage;

# Test harness for ngx_http_usage_module, in the spirit of nginx-tests'
# Test::Nginx.  Core Perl only.
#
# Each test object owns a temporary directory, a free port on 127.0.0.1 and
# (once run) an nginx master process started with "daemon off" as a child of
# the test.  When the test finishes (done_testing, or END), nginx is stopped
# and error.log is checked for [alert], [crit], [emerg] and sanitizer reports:
# one extra test, counted by $t->plan(N) (which plans N + 1 tests).
#
# A config with "daemon on" is started the same way: the launcher exits, the
# master is read from the pid file and watched through /proc (binary
# upgrade needs a daemonized master: USR2 and WINCH are ignored otherwise).
# The same test directory can be started again after stop() or crash().
#
# Test::Usage->new(prefix => DIR): nginx's prefix (-p), which relative
# paths such as "load_module modules/x.so" resolve against; default the
# test directory.
#
# Environment:
#   USAGE_MODULE         the module .so (default <repo>/build/nginx/ngx_http_usage_module.so)
#   NGINX_BIN            nginx binary (default /usr/sbin/nginx)
#   USAGE_NGINX_PRELOAD  LD_PRELOAD for the nginx process only
#   TEST_USAGE_LEAVE     keep the test directory (printed with diag)
#   TEST_USAGE_VERBOSE   diag every request and response

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(rmtree);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More ();
use Time::HiRes qw(sleep time);
use Time::Local qw(timegm);

our @EXPORT_OK = qw(json_encode json_decode iso_ms parse_iso
	$UUID4_RE $ISO_RE wait_until api_conf pct alive
	utf8_error strict_json esc_bytes envelope_problem slurp);

our $UUID4_RE = qr/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\z/;
our $ISO_RE = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/;

our $REPO = abs_path(dirname(__FILE__) . '/../../..');

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my @INSTANCES;

###############################################################################
# small utilities

sub json_encode { $JSON->encode($_[0]) }

sub json_decode {
	my ($text) = @_;
	return undef unless defined $text;
	my $v = eval { $JSON->decode($text) };
	return $v;
}

# percent-encode the UTF-8 bytes of a (character) string, RFC 3986 unreserved kept
sub pct {
	my ($s) = @_;
	utf8::encode($s);
	$s =~ s/([^A-Za-z0-9._~-])/sprintf("%%%02X", ord $1)/ge;
	return $s;
}

# epoch milliseconds -> "2026-11-21T04:19:12.254Z"
sub iso_ms {
	my ($ms) = @_;
	my @t = gmtime(int($ms / 1000));
	return sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ',
		$t[5] + 1900, $t[4] + 1, $t[3], $t[2], $t[1], $t[0], $ms % 1000);
}

# "2026-11-21T04:19:12.254Z" -> epoch milliseconds
sub parse_iso {
	my ($s) = @_;
	return undef unless defined $s
		&& $s =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?Z\z/;
	my $ms = defined $7 ? substr($7 . '00', 0, 3) : 0;
	return timegm($6, $5, $4, $3, $2 - 1, $1) * 1000 + $ms;
}

# poll $cb until it returns true, at most $timeout seconds; returns its value
sub wait_until(&;$) {
	my ($cb, $timeout) = @_;
	$timeout //= 5;
	my $end = time() + $timeout;
	while (1) {
		my $v = $cb->();
		return $v if $v;
		return $v if time() > $end;
		sleep 0.05;
	}
}

# a whole file, or '' when it cannot be read
sub slurp {
	my ($path) = @_;
	open my $fh, '<', $path or return '';
	local $/;
	return scalar <$fh>;
}

# A typical config: one zone, the API on "location /".
#   zone => 'usage_zone ...;'  http => '...'  server => '...'
#   location => '...'  track => 1 (usage_track usage; in the server)
#   listen => extra listen parameters (e.g. 'reuseport')
sub api_conf {
	my (%o) = @_;
	my $zone = $o{zone} // 'usage_zone zone=usage:1m;';
	my $track = $o{track} ? 'usage_track usage;' : '';
	my $listen = $o{listen} // '';
	$o{$_} //= '' for qw(http server location);
	return <<"END_CONF";
http {
    $zone
    $o{http}
    server {
        listen 127.0.0.1:%%PORT%% $listen;
        server_name localhost;
        $track
        $o{server}
        location / {
            usage_api usage;
            $o{location}
        }
    }
}
END_CONF
}

###############################################################################
# strict UTF-8 and strict JSON (answers must be both, whatever was sent)

# undef when $bytes is well-formed UTF-8 as RFC 3629 and Unicode's table 3-7
# define it (continuation bytes 0x80-0xBF only, no overlong form, no
# surrogate, nothing past U+10FFFF); else where and what the first bad
# sequence is.  Noncharacters (U+FFFF, U+10FFFF, U+FDD0) are well-formed:
# Encode's strict "UTF-8" refuses them (Encode 3.17), so it is not the judge.
sub utf8_error {
	my ($bytes) = @_;
	return 'undefined' unless defined $bytes;
	return 'a character string, not bytes' if utf8::is_utf8($bytes)
		&& $bytes =~ /[^\x00-\xff]/;
	pos($bytes) = 0;
	while ($bytes =~ /\G(?:[\x00-\x7f]++
			|[\xc2-\xdf][\x80-\xbf]
			|\xe0[\xa0-\xbf][\x80-\xbf]
			|[\xe1-\xec\xee\xef][\x80-\xbf]{2}
			|\xed[\x80-\x9f][\x80-\xbf]
			|\xf0[\x90-\xbf][\x80-\xbf]{2}
			|[\xf1-\xf3][\x80-\xbf]{3}
			|\xf4[\x80-\x8f][\x80-\xbf]{2})/xgc)
	{
	}
	my $at = pos($bytes) // 0;
	return undef if $at == length $bytes;
	return sprintf('invalid UTF-8 at byte %d: %s (in ...%s...)', $at,
		esc_bytes(substr($bytes, $at, 4)),
		esc_bytes(substr($bytes, $at > 40 ? $at - 40 : 0,
			($at > 40 ? 40 : $at) + 40)));
}

my $STRICT = JSON::PP->new->allow_nonref;

# A body as a strict client reads it: well-formed UTF-8 (utf8_error), then
# JSON (RFC 8259, as JSON::PP reads characters: no trailing commas, no raw
# control characters, no lone surrogate escape).  In list context (value,
# error); error is undef when the body is strict JSON.  In scalar context
# the value, undef when it is not.
sub strict_json {
	my ($bytes) = @_;
	my ($v, $err);
	$err = utf8_error($bytes);
	unless (defined $err) {
		my $chars = $bytes;
		utf8::decode($chars) or $err = 'utf8::decode failed';
		unless (defined $err) {
			$v = eval { $STRICT->decode($chars) };
			if ($@) {
				($err = "not JSON: $@") =~ s/ at \S+ line \d+\.\n?\z//;
				undef $v;
			}
		}
	}
	return wantarray ? ($v, $err) : $v;
}

# bytes shown printable: \xNN for anything outside 0x20-0x7e (and \\)
sub esc_bytes {
	my ($s) = @_;
	return '(undef)' unless defined $s;
	utf8::encode($s) if utf8::is_utf8($s);
	$s =~ s/([^\x20-\x5b\x5d-\x7e])/sprintf('\\x%02x', ord $1)/ge;
	return $s;
}

# undef when a response is the API's error envelope,
#   {"error":{"code":"<CODE>","message":"<text>","traceId":"<id>"}}
# (strict JSON, nothing else at the top, traceId that of x-trace-id);
# else what is wrong with it
sub envelope_problem {
	my ($r) = @_;
	my ($j, $err) = strict_json($r->body);
	return $err if defined $err;
	return 'not an object' unless ref $j eq 'HASH';
	my @top = sort keys %$j;
	return "top-level keys @top, not just error"
		unless "@top" eq 'error' && ref $j->{error} eq 'HASH';
	my $e = $j->{error};
	for my $k (qw(code message traceId)) {
		return "error.$k missing or not a non-empty string"
			unless defined $e->{$k} && !ref $e->{$k} && length $e->{$k};
	}
	return "error.code '$e->{code}' is not an upper-case word"
		unless $e->{code} =~ /^[A-Z][A-Z_]*\z/;
	my $tid = $r->header('x-trace-id');
	return 'no x-trace-id header' unless defined $tid;
	return "traceId '$e->{traceId}' is not x-trace-id '$tid'"
		unless $e->{traceId} eq $tid;
	return undef;
}

###############################################################################
# construction and configuration

sub new {
	my ($class, %opts) = @_;

	my $dir = tempdir('usage-test-XXXXXXXX', TMPDIR => 1,
		CLEANUP => 0);
	chmod 0755, $dir;    # workers may run as nobody

	my $self = bless {
		dir => $dir,
		module => $ENV{USAGE_MODULE}
			|| "$REPO/build/nginx/ngx_http_usage_module.so",
		nginx => $ENV{NGINX_BIN} || '/usr/sbin/nginx',
		port => free_port(),
		timeout => 5,
		finished => 0,
		checks => 0,
		%opts,
	}, $class;

	push @INSTANCES, $self;
	return $self;
}

sub dir { $_[0]{dir} }
sub port { $_[0]{port} }
sub module { $_[0]{module} }
sub prefix { $_[0]{prefix} // "$_[0]{dir}/" }
sub master_pid { $_[0]{pid} }

sub free_port {
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Proto => 'tcp', Listen => 1, ReuseAddr => 1)
		or die "cannot bind a free port: $!\n";
	my $port = $s->sockport();
	close $s;
	return $port;
}

# $t->plan(N): N tests of the file + 1 for the error.log check
sub plan {
	my ($self, $n) = @_;
	Test::More::plan(tests => $n + 1);
	return $self;
}

# Expand a config template:
#   %%PORT%%     the test port          %%PORT2%%  a second free port
#   %%TESTDIR%%  the test directory     %%MODULE%% the load_module line
# Unless the template sets them itself, the main context gets: load_module,
# daemon off, master_process on, worker_processes 2, error_log (info) and pid
# in the test dir, an events block; every http block gets temp paths in the
# test dir and "access_log off" (each unless the template sets it).
sub expand_config {
	my ($self, $conf, %opts) = @_;
	my $dir = $self->{dir};

	$self->{port2} //= free_port();

	my $load = "load_module $self->{module};";
	my $header = '';

	$header .= "$load\n" unless $conf =~ /%%MODULE%%|^\s*load_module\b/m
		|| $opts{no_module};
	$header .= "daemon off;\n" unless $conf =~ /^\s*daemon\b/m;
	$header .= "master_process on;\n" unless $conf =~ /^\s*master_process\b/m;
	$header .= "worker_processes 2;\n"
		unless $conf =~ /^\s*worker_processes\b/m;
	$header .= "error_log $dir/error.log info;\n"
		unless $conf =~ /^\s*error_log\b/m;
	$header .= "pid $dir/nginx.pid;\n" unless $conf =~ /^\s*pid\b/m;
	$header .= "events { worker_connections 1024; }\n"
		unless $conf =~ /^\s*events\b/m;

	# (each unless the config sets it: a shipped config has its own)
	my $http = join '', map { "    $_\n" }
		(map { $conf =~ /^\s*${_}_temp_path\b/m ? ()
			: "${_}_temp_path $dir/${_}_temp;" }
			qw(client_body proxy fastcgi uwsgi scgi)),
		($conf =~ /^\s*access_log\b/m ? () : "access_log off;");

	$conf =~ s/^(\s*http\s*\{[^\n]*\n)/$1$http/m;
	$conf = $header . $conf;

	$conf =~ s/%%MODULE%%/$load/g;
	$conf =~ s/%%PORT%%/$self->{port}/g;
	$conf =~ s/%%PORT2%%/$self->{port2}/g;
	$conf =~ s/%%TESTDIR%%/$dir/g;

	return $conf;
}

sub write_file {
	my ($self, $name, $content) = @_;
	my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
	open my $fh, '>', $path or die "cannot write $path: $!\n";
	binmode $fh;
	print $fh $content;
	close $fh;
	return $path;
}

# promtool check metrics on a /metrics body: two tests, skipped when
# promtool is missing (scripts/test.sh installs it with Debian's prometheus)
sub promtool_check {
	my ($self, $body) = @_;
	SKIP: {
		my $promtool = `sh -c 'command -v promtool' 2>/dev/null`;
		chomp $promtool;
		Test::More::skip('promtool not installed (apt-get install '
			. 'prometheus; scripts/test.sh installs it)', 2)
			unless $promtool;
		my $file = $self->write_file('metrics.txt', $body);
		my $out = `promtool check metrics < $file 2>&1`;
		Test::More::is($?, 0, 'promtool check metrics passes')
			or Test::More::diag($out);
		Test::More::is($out, '', 'promtool: no lint problem')
			or Test::More::diag($out);
	}
}

sub read_file {
	my ($self, $name) = @_;
	my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
	open my $fh, '<', $path or return '';
	binmode $fh;
	local $/;
	my $c = <$fh>;
	close $fh;
	return $c // '';
}

sub write_config {
	my ($self, $conf, %opts) = @_;
	$self->{conf} = $self->expand_config($conf, %opts);
	$self->write_file('nginx.conf', $self->{conf});
	($self->{workers}) = $self->{conf} =~ /^\s*worker_processes\s+(\d+)/m;
	$self->{workers} //= 1;
	$self->{workers} = 0 if $self->{conf} =~ /^\s*master_process\s+off/m;
	return $self;
}

###############################################################################
# starting and stopping

sub _exec_nginx {
	my ($self, @args) = @_;
	if ($ENV{USAGE_NGINX_PRELOAD}) {
		$ENV{LD_PRELOAD} = $ENV{USAGE_NGINX_PRELOAD};
	}
	{ exec($self->{nginx}, @args) };
	print STDERR "exec $self->{nginx}: $!\n";
	POSIX::_exit(127);
}

sub run {
	my ($self) = @_;
	my $dir = $self->{dir};

	die "write_config() first\n" unless defined $self->{conf};

	unless (-f $self->{module}) {
		Test::More::diag("module not found: $self->{module} "
			. "(build it with scripts/build.sh or set USAGE_MODULE)");
		$self->_fail_start("module .so missing");
	}

	my $daemon = $self->{conf} =~ /^\s*daemon\s+on\s*;/m;

	# a pid file left by a master that was killed
	if ($daemon) {
		my ($stale) = $self->read_file('nginx.pid') =~ /(\d+)/;
		unlink "$dir/nginx.pid" if !$stale || !alive($stale);
	}

	my $pid = fork();
	die "fork: $!\n" unless defined $pid;

	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/stderr.log";
		open STDERR, '>>', "$dir/stderr.log";
		$self->_exec_nginx('-p', $self->prefix, '-c', "$dir/nginx.conf",
			'-e', "$dir/error.log");
	}

	$self->{started} = time();

	if ($daemon) {
		# the launcher forks the master and exits 0; the master writes
		# the pid file once it is up
		my $end = time() + 10;
		my $launcher = 1;
		while (1) {
			if ($launcher && waitpid($pid, WNOHANG) == $pid) {
				$launcher = 0;
				$self->_fail_start("nginx exited with status " . ($? >> 8))
					if $?;
			}
			my ($master) = $self->read_file('nginx.pid') =~ /(\d+)/;
			if (!$launcher && $master && alive($master)) {
				$pid = $master;
				last;
			}
			$self->_fail_start("no master in nginx.pid after 10s")
				if time() > $end;
			sleep 0.05;
		}
		$self->{daemon} = 1;
	}

	$self->{pid} = $pid;

	# wait for the port (bounded), fail loudly if nginx died
	my $end = time() + 10;
	while (1) {
		if ($self->_gone($pid)) {
			delete $self->{pid};
			$self->_fail_start("nginx exited with status "
				. (($self->{exit_status} // 0) >> 8));
		}
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
			PeerPort => $self->{port}, Proto => 'tcp', Timeout => 1);
		if ($s) {
			close $s;
			last;
		}
		if (time() > $end) {
			$self->_fail_start("port $self->{port} not accepting after 10s");
		}
		sleep 0.05;
	}

	# and for the workers to be forked
	if ($self->{workers}) {
		my $ok = wait_until {
			scalar($self->worker_pids()) >= $self->{workers}
		} 10;
		$self->_fail_start("workers did not start") unless $ok;
	}

	return $self;
}

sub _fail_start {
	my ($self, $why) = @_;
	Test::More::diag("nginx failed to start: $why");
	Test::More::diag("config:\n" . ($self->{conf} // ''));
	Test::More::diag("error.log:\n" . $self->read_file('error.log'));
	my $e = $self->read_file('stderr.log');
	Test::More::diag("stderr:\n$e") if length $e;
	Test::More::BAIL_OUT("nginx did not start: $why")
		if $ENV{TEST_USAGE_BAIL};
	Test::More::ok(0, "nginx started ($why)");
	$self->stop();
	$self->{finished} = 1;
	$self->_cleanup();
	exit(1);
}

# child processes of the master read from /proc (worker processes)
sub worker_pids {
	my ($self, $ppid) = @_;
	$ppid //= $self->{pid};
	return () unless $ppid;
	my @pids;
	opendir my $dh, '/proc' or return ();
	for my $p (grep { /^\d+$/ } readdir $dh) {
		open my $fh, '<', "/proc/$p/stat" or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat && $stat =~ /\)\s+(\S)\s+(\d+)/;
		next if $1 eq 'Z' || $1 eq 'X';
		push @pids, $p + 0 if $2 == $ppid;
	}
	closedir $dh;
	@pids = sort { $a <=> $b } @pids;
	return @pids;
}

# HUP the master; wait until the old workers are gone and new ones are up
sub reload {
	my ($self, %opts) = @_;
	my $timeout = $opts{timeout} // 10;
	my %old = map { $_ => 1 } $self->worker_pids();
	kill 'HUP', $self->{pid} or return 0;

	my $ok = wait_until {
		my @now = $self->worker_pids();
		my @new = grep { !$old{$_} } @now;
		my @left = grep { $old{$_} } @now;
		!@left && @new >= $self->{workers};
	} $timeout;

	Test::Usage::diag_log($self, "reload did not complete")
		unless $ok || $opts{may_fail};
	return $ok;
}

sub diag_log {
	my ($self, $why) = @_;
	Test::More::diag("$why; error.log:\n" . $self->read_file('error.log'));
}

# is the process running (not gone, not a zombie)?
sub alive {
	my ($pid) = @_;
	return 0 unless $pid;
	open my $fh, '<', "/proc/$pid/stat" or return 0;
	my $stat = <$fh> // '';
	close $fh;
	return 0 unless $stat =~ /\)\s+(\S)\s/;
	return $1 ne 'Z' && $1 ne 'X';
}

# has the process exited?  Reaps it when it is our child (its status goes
# to exit_status); any other process (a daemonized master, the new master
# of a binary upgrade) is watched through /proc
sub _gone {
	my ($self, $pid) = @_;
	my $w = waitpid($pid, WNOHANG);
	if ($w == $pid) {
		$self->{exit_status} = $?;
		return 1;
	}
	return 0 if $w == 0;
	return !alive($pid);
}

# wait (bounded) until a process has exited; true if it has
sub wait_gone {
	my ($self, $pid, $timeout) = @_;
	$timeout //= 10;
	return wait_until { $self->_gone($pid) } $timeout;
}

# $t->stop(signal => 'TERM'): stop the master (QUIT unless told), then TERM
# and KILL if it does not exit; also an old master left by upgrade()
sub stop {
	my ($self, %opts) = @_;
	my $first = $opts{signal} // 'QUIT';

	for my $key (qw(old_pid pid)) {
		my $pid = delete $self->{$key} or next;
		next if $key eq 'old_pid' && !alive($pid);
		$self->_stop_pid($pid, $first);
	}
	return $self;
}

sub _stop_pid {
	my ($self, $pid, $first) = @_;
	my @steps = ($first, $first eq 'TERM' ? () : 'TERM', 'KILL');
	for my $i (0 .. $#steps) {
		my $sig = $steps[$i];
		kill $sig, $pid;
		return 1 if $self->wait_gone($pid, $sig eq 'KILL' ? 5 : 10);
		Test::More::diag("nginx $pid did not exit on $sig"
			. ($i < $#steps ? ", sending $steps[$i + 1]" : ''));
		$self->{stop_forced} = 1;
	}
	return 0;
}

# kill -9 the master and its workers at once (a crash: nothing is saved on
# the way out); returns when they are gone
sub crash {
	my ($self) = @_;
	my $pid = delete $self->{pid} or return $self;
	my @workers = $self->worker_pids($pid);
	kill 'KILL', $pid, @workers;
	wait_until {
		$self->_gone($pid) && !grep { alive($_) } @workers
	} 10;
	return $self;
}

# Binary upgrade: USR2 to the master (it needs "daemon on"), wait until the
# new master has written nginx.pid (the old one is in nginx.pid.oldbin) and
# started its workers.  The new master becomes master_pid, the old one
# old_pid (WINCH/QUIT it in the test; stop() also stops it if still alive).
# Returns the new master's pid, undef on failure.
sub upgrade {
	my ($self, %opts) = @_;
	my $old = $self->{pid} or return undef;
	my $dir = $self->{dir};
	kill 'USR2', $old or return undef;

	my $timeout = $opts{timeout} // 10;
	my $new;
	my $ok = wait_until {
		my ($p) = $self->read_file('nginx.pid') =~ /(\d+)/;
		$new = $p if $p && $p != $old && alive($p);
		$new && -f "$dir/nginx.pid.oldbin"
			&& $self->worker_pids($new) >= $self->{workers};
	} $timeout;

	unless ($ok) {
		$self->diag_log("binary upgrade did not complete");
		return undef;
	}

	$self->{old_pid} = $old;
	$self->{pid} = $new;
	return $new;
}

sub old_pid { $_[0]{old_pid} }

# $t->parallel(N, sub { my ($i) = @_; ...; return TEXT }, timeout => S):
# runs the sub in N forked processes that start together (after the last
# fork); returns their texts in order (undef for one that did not finish in
# time: it is killed).  The sub must not run Test::More tests.
sub parallel {
	my ($self, $n, $cb, %opts) = @_;
	my $timeout = $opts{timeout} // 30;
	my $dir = $self->{dir};
	my $tag = ++$self->{parallel};

	pipe(my $gate_r, my $gate_w) or die "pipe: $!\n";

	my %kids;
	for my $i (1 .. $n) {
		my $pid = fork();
		die "fork: $!\n" unless defined $pid;
		if ($pid == 0) {
			close $gate_w;
			my $x = <$gate_r>;    # EOF: everybody is forked
			close $gate_r;
			my $out = eval { $cb->($i) };
			$out = "ERROR: $@" if $@;
			$self->write_file("parallel-$tag-$i.tmp", $out // '');
			rename "$dir/parallel-$tag-$i.tmp", "$dir/parallel-$tag-$i.out";
			POSIX::_exit(0);
		}
		$kids{$pid} = $i;
	}
	close $gate_r;
	close $gate_w;

	my $end = time() + $timeout;
	while (%kids && time() < $end) {
		for my $pid (keys %kids) {
			delete $kids{$pid} if waitpid($pid, WNOHANG) == $pid;
		}
		sleep 0.02 if %kids;
	}
	for my $pid (keys %kids) {
		Test::More::diag("parallel client $kids{$pid} killed after ${timeout}s");
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}

	return map {
		-f "$dir/parallel-$tag-$_.out"
			? $self->read_file("parallel-$tag-$_.out") : undef
	} 1 .. $n;
}

# $t->background(N, SECONDS, sub { my ($k, $i) = @_; ...; return TRUE }):
# a load that runs while the test goes on: N forked clients each call the
# sub (client k, its i-th call) until SECONDS have passed.  Returns a
# handle; $t->background_wait($handle) waits for the clients (the load's
# time and 30 s more at most) and gives how many calls returned true.  The
# sub must not run Test::More tests.
sub background {
	my ($self, $n, $seconds, $cb) = @_;
	my $dir = $self->{dir};
	my $tag = 'bg' . ++$self->{parallel};
	my @kids;
	for my $k (1 .. $n) {
		my $pid = fork();
		die "fork: $!\n" unless defined $pid;
		if ($pid == 0) {
			my ($done, $i) = (0, 0);
			my $end = time() + $seconds;
			while (time() < $end) {
				$done++ if eval { $cb->($k, $i++) };
			}
			$self->write_file("$tag-$k.tmp", $done);
			rename "$dir/$tag-$k.tmp", "$dir/$tag-$k.out";
			POSIX::_exit(0);
		}
		push @kids, [ $pid, "$tag-$k.out" ];
	}
	return { kids => \@kids, end => time() + $seconds + 30 };
}

sub background_wait {
	my ($self, $bg) = @_;
	my $total = 0;
	for my $kid (@{ $bg->{kids} }) {
		my ($pid, $file) = @$kid;
		while (waitpid($pid, WNOHANG) != $pid) {
			if (time() > $bg->{end}) {
				Test::More::diag("background client $pid killed");
				kill 'KILL', $pid;
				waitpid($pid, 0);
				last;
			}
			sleep 0.02;
		}
		$total += $self->read_file($file) || 0;
	}
	return $total;
}

# Lines of error.log (and nginx's own stderr) that fail a test.
sub log_problems {
	my ($self) = @_;
	my $log = $self->read_file('error.log') . $self->read_file('stderr.log');
	my @allowed = @{ $self->{allowed} // [] };
	my @bad = grep {
		my $line = $_;
		(/\[(?:alert|crit|emerg)\]/
			&& !grep { $line =~ $_ } @allowed)
		|| /AddressSanitizer|LeakSanitizer|runtime error:/
	} split /\n/, $log;
	push @bad, 'nginx did not stop on QUIT' if $self->{stop_forced};
	return @bad;
}

# an [emerg] the test provokes on purpose (e.g. a refused reload) is not a
# failure: only lines matching one of these patterns are let through
sub allow_emerg {
	my ($self, $re) = @_;
	push @{ $self->{allowed} }, $re;
	return $self;
}

# stop nginx and run the error.log check (one test); idempotent
sub finish {
	my ($self) = @_;
	return if $self->{finished};
	$self->{finished} = 1;
	my $ran = exists $self->{started};
	$self->stop();
	if ($ran) {
		my @bad = $self->log_problems();
		Test::More::is(join("\n", @bad), '',
			'no alerts, crits, emergs or sanitizer reports in error.log');
		if (@bad) {
			my @lines = split /\n/, $self->read_file("error.log");
			splice(@lines, 0, @lines - 40) if @lines > 40;
			Test::More::diag("error.log tail:\n" . join("\n", @lines));
		}
	}
	$self->_cleanup();
}

sub _cleanup {
	my ($self) = @_;
	if ($ENV{TEST_USAGE_LEAVE}) {
		Test::More::diag("test dir left: $self->{dir}");
		return;
	}
	my $failed = grep { !$_ } Test::More->builder->summary;
	if ($failed) {
		Test::More::diag("test dir kept for inspection: $self->{dir}");
		return;
	}
	rmtree($self->{dir});
}

sub done_testing {
	my ($self) = @_;
	$self->finish();
	Test::More::done_testing();
}

# finish every instance not finished yet; also for helpers whose END
# runs before this one and whose servers must outlive nginx
# (Test::UsageRedis: a syncing nginx must not see its Redis go first)
sub finish_all {
	for my $t (@INSTANCES) {
		$t->finish() unless $t->{finished};
	}
}

END {
	my $status = $?;
	finish_all();
	$? = $status;
}

# The README's run command, scripts/run.sh, in the background on the
# shipped configuration: a fresh prefix, a free port, 2 workers.  Returns
# (pid, prefix, port, whether /health answered within 60 s); its output
# is in prefix/out.log.
sub run_script {
	my ($self) = @_;
	my $root = dirname(dirname(dirname(dirname(abs_path(__FILE__)))));
	my $prefix = tempdir('usage-run-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
	my $port = $self->free_port();

	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		open STDOUT, '>', "$prefix/out.log";
		open STDERR, '>&', \*STDOUT;
		$ENV{PORT} = $port;
		$ENV{WORKERS} = 2;
		$ENV{USAGE_PREFIX} = $prefix;
		exec "$root/scripts/run.sh" or POSIX::_exit(127);
	}

	my $up = wait_until {
		my $r = $self->get('/health', port => $port);
		$r->status && $r->status == 200;
	} 60;

	return ($pid, $prefix, $port, $up);
}

# nginx -t with a config template; returns (exit code, output)
sub check_config {
	my ($self, $conf, %opts) = @_;
	my $n = ++$self->{checks};
	my $dir = $self->{dir};
	my $text = $self->expand_config($conf, %opts);
	$text =~ s/^error_log \S+ info;$/error_log $dir\/check-$n.log info;/m;
	$self->write_file("check-$n.conf", $text);

	my $pid = fork();
	die "fork: $!\n" unless defined $pid;
	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>', "$dir/check-$n.out";
		open STDERR, '>&', \*STDOUT;
		$self->_exec_nginx('-t', '-p', $self->prefix, '-c', "$dir/check-$n.conf",
			'-e', "$dir/check-$n.err");
	}

	my $end = time() + 15;
	my $code;
	while (1) {
		if (waitpid($pid, WNOHANG) == $pid) {
			$code = $? >> 8;
			last;
		}
		if (time() > $end) {
			kill 'KILL', $pid;
			waitpid($pid, 0);
			$code = -1;
			last;
		}
		sleep 0.02;
	}

	my $out = $self->read_file("check-$n.out")
		. $self->read_file("check-$n.err")
		. $self->read_file("check-$n.log");
	return ($code, $out);
}

###############################################################################
# HTTP client

# $t->request(METHOD, PATH, headers => [k => v, ...] or {..}, body => BYTES,
#     json => DATA (encodes and sets Content-Type), chunked => 1,
#     timeout => SEC, keepalive => 1, conn => $conn, raw => 1 (PATH is the
#     whole request), port => N, host => NAME)
# Returns a Test::Usage::Response (status 0 and ->error on failure).
sub request {
	my ($self, $method, $path, %opts) = @_;
	my $conn = $opts{conn};
	my $own = !$conn;
	$conn //= $self->connect(port => $opts{port});
	unless ($conn) {
		return Test::Usage::Response->new(error => "connect: $!");
	}
	my $r = $conn->request($method, $path, %opts,
		keepalive => ($own ? $opts{keepalive} : 1));
	$conn->close() if $own;
	return $r;
}

sub connect {
	my ($self, %opts) = @_;
	return Test::Usage::Conn->new(port => $opts{port} || $self->{port},
		timeout => $opts{timeout} || $self->{timeout});
}

sub get { my ($self, $path, %o) = @_; $self->request('GET', $path, %o) }
sub head { my ($self, $path, %o) = @_; $self->request('HEAD', $path, %o) }
sub options { my ($self, $path, %o) = @_; $self->request('OPTIONS', $path, %o) }

# POST a Perl structure (or a raw string) as JSON
sub post_json {
	my ($self, $path, $data, %o) = @_;
	my $body = ref $data ? json_encode($data) : $data;
	$self->request('POST', $path, body => $body,
		headers => ['Content-Type' => 'application/json', @{ $o{headers} || [] }],
		map { $_ => $o{$_} } grep { $_ ne 'headers' } keys %o);
}

# POST one event, returns the response
sub post_event {
	my ($self, $entity, $type, $metadata, %o) = @_;
	my %ev = (entityId => $entity, eventType => $type);
	$ev{metadata} = $metadata if defined $metadata;
	return $self->post_json('/v1/events', \%ev, %o);
}

###############################################################################

package Test::Usage::Conn;

use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

sub new {
	my ($class, %o) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
		PeerPort => $o{port}, Proto => 'tcp', Timeout => $o{timeout})
		or return undef;
	setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
	binmode $s;
	return bless { sock => $s, buf => '', timeout => $o{timeout},
		port => $o{port} }, $class;
}

sub close {
	my ($self) = @_;
	close $self->{sock} if $self->{sock};
	delete $self->{sock};
}

sub sock { $_[0]{sock} }

sub send_raw {
	my ($self, $data) = @_;
	my $sock = $self->{sock} or return 0;
	local $SIG{PIPE} = 'IGNORE';
	my $off = 0;
	my $end = time() + $self->{timeout};
	my $sel = IO::Select->new($sock);
	while ($off < length $data) {
		my $left = $end - time();
		return 0 if $left <= 0;
		next unless $sel->can_write($left);
		my $n = syswrite($sock, $data, length($data) - $off, $off);
		return 0 unless defined $n;
		$off += $n;
	}
	return 1;
}

# read more bytes into the buffer; 0 on EOF, undef on timeout/error
sub _fill {
	my ($self, $end) = @_;
	my $sock = $self->{sock} or return 0;
	my $left = $end - time();
	return undef if $left <= 0;
	my $sel = IO::Select->new($sock);
	return undef unless $sel->can_read($left);
	my $n = sysread($sock, my $chunk, 65536);
	return undef unless defined $n;
	$self->{buf} .= $chunk;
	return $n;
}

sub request {
	my ($self, $method, $path, %o) = @_;

	my $req;
	if ($o{raw}) {
		$req = $path;
		($method) = $path =~ /^(\S+)/;
	} else {
		my @h = ref $o{headers} eq 'HASH' ? %{ $o{headers} }
			: @{ $o{headers} || [] };
		my $body = $o{body};
		if (defined $o{json}) {
			$body = ref $o{json} ? Test::Usage::json_encode($o{json})
				: $o{json};
			push @h, 'Content-Type' => 'application/json';
		}
		my %have = map { lc $h[$_ * 2] => 1 } 0 .. int(@h / 2) - 1;
		$req = "$method $path HTTP/1.1\r\n";
		$req .= "Host: " . ($o{host} // 'localhost') . "\r\n"
			unless $have{host};
		$req .= "Connection: close\r\n"
			unless $o{keepalive} || $have{connection};
		while (my ($k, $v) = splice @h, 0, 2) {
			$req .= "$k: $v\r\n";
		}
		if (defined $body) {
			if ($o{chunked}) {
				$req .= "Transfer-Encoding: chunked\r\n\r\n";
				my $size = $o{chunk_size} || 1024;
				for (my $i = 0; $i < length $body; $i += $size) {
					my $c = substr($body, $i, $size);
					$req .= sprintf("%x\r\n%s\r\n", length $c, $c);
				}
				$req .= "0\r\n\r\n";
			} else {
				$req .= "Content-Length: " . length($body) . "\r\n"
					unless $have{'content-length'};
				$req .= "\r\n$body";
			}
		} else {
			$req .= "\r\n";
		}
	}

	Test::More::diag(">>> $req") if $ENV{TEST_USAGE_VERBOSE};

	local $self->{timeout} = $o{timeout} if $o{timeout};
	$self->send_raw($req)
		or return Test::Usage::Response->new(error => "send failed: $!");

	my $r = $self->read_response($method);
	Test::More::diag("<<< " . ($r->{raw_head} // '') . ($r->{body} // '')
		. ($r->{error} ? " [$r->{error}]" : ''))
		if $ENV{TEST_USAGE_VERBOSE};
	return $r;
}

sub read_response {
	my ($self, $method) = @_;
	my $end = time() + $self->{timeout};
	$method //= 'GET';

	my $head;
	while (1) {
		my $i = index($self->{buf}, "\r\n\r\n");
		if ($i >= 0) {
			$head = substr($self->{buf}, 0, $i + 4, '');
			# skip 1xx interim responses
			if ($head =~ m{^HTTP/\d\.\d\s+1\d\d\b}) {
				next;
			}
			last;
		}
		my $n = $self->_fill($end);
		return Test::Usage::Response->new(error =>
			defined $n ? 'connection closed before response header'
			: 'timeout reading response header',
			partial => $self->{buf})
			unless $n;
	}

	my ($version, $status, $reason) = $head =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s*([^\r\n]*)\r\n}
		or return Test::Usage::Response->new(error => 'bad status line',
			partial => $head);

	my %h;
	my @order;
	for my $line (split /\r\n/, $head) {
		next unless $line =~ /^([^:\s]+):\s*(.*?)\s*$/;
		push @{ $h{lc $1} }, $2;
		push @order, [$1, $2];
	}

	my $body = '';
	my $error;
	my $te = join(',', @{ $h{'transfer-encoding'} || [] });
	my $cl = $h{'content-length'} ? $h{'content-length'}[0] : undef;

	if ($method eq 'HEAD' || $status == 204 || $status == 304) {
		# no body
	} elsif ($te =~ /chunked/i) {
		my $data = '';
		CHUNK: while (1) {
			my $i;
			while (($i = index($self->{buf}, "\r\n")) < 0) {
				my $n = $self->_fill($end);
				unless ($n) { $error = 'incomplete chunked body'; last CHUNK }
			}
			my $line = substr($self->{buf}, 0, $i + 2, '');
			my ($size) = $line =~ /^([0-9a-fA-F]+)/;
			unless (defined $size) { $error = 'bad chunk size'; last }
			$size = hex $size;
			if ($size == 0) {
				# trailers up to an empty line
				while (1) {
					while (($i = index($self->{buf}, "\r\n")) < 0) {
						my $n = $self->_fill($end);
						unless ($n) { $error = 'incomplete trailer'; last CHUNK }
					}
					my $t = substr($self->{buf}, 0, $i + 2, '');
					last CHUNK if $t eq "\r\n";
				}
			}
			while (length($self->{buf}) < $size + 2) {
				my $n = $self->_fill($end);
				unless ($n) { $error = 'incomplete chunk'; last CHUNK }
			}
			$data .= substr($self->{buf}, 0, $size, '');
			substr($self->{buf}, 0, 2, '');
		}
		$body = $data;
	} elsif (defined $cl) {
		while (length($self->{buf}) < $cl) {
			my $n = $self->_fill($end);
			unless ($n) { $error = 'incomplete body'; last }
		}
		$body = substr($self->{buf}, 0, $cl, '');
	} else {
		# until close
		while (1) {
			my $n = $self->_fill($end);
			unless (defined $n) { $error = 'timeout reading body'; last }
			last if $n == 0;
		}
		$body = $self->{buf};
		$self->{buf} = '';
	}

	return Test::Usage::Response->new(status => $status + 0,
		reason => $reason, version => $version, headers => \%h,
		header_list => \@order, body => $body, error => $error,
		raw_head => $head);
}

###############################################################################

package Test::Usage::Response;

use strict;
use warnings;

sub new {
	my ($class, %o) = @_;
	return bless { status => 0, headers => {}, body => '', %o }, $class;
}

sub status { $_[0]{status} }
sub body { $_[0]{body} }
sub error { $_[0]{error} }
sub raw_head { $_[0]{raw_head} }

# all values of a header (case-insensitive name)
sub headers {
	my ($self, $name) = @_;
	return @{ $self->{headers}{lc $name} || [] };
}

# a header's values joined by ", ", undef when absent
sub header {
	my ($self, $name) = @_;
	my @v = $self->headers($name);
	return @v ? join(', ', @v) : undef;
}

sub json {
	my ($self) = @_;
	return $self->{json} if exists $self->{json};
	return $self->{json} = Test::Usage::json_decode($self->{body});
}

# data of a {"success":true,"data":...} envelope
sub data {
	my ($self) = @_;
	my $j = $self->json;
	return ref $j eq "HASH" && ref $j->{data} eq "HASH" ? $j->{data} : {};
}

# error object of an error envelope
sub err {
	my ($self) = @_;
	my $j = $self->json;
	return ref $j eq 'HASH' && ref $j->{error} eq 'HASH' ? $j->{error} : {};
}

sub trace_id { $_[0]->header('x-trace-id') }

# the body read as strict JSON (Test::Usage::strict_json): (value, error)
sub strict_json {
	my ($self) = @_;
	return Test::Usage::strict_json($self->{body});
}

sub describe {
	my ($self) = @_;
	return "no response: $self->{error}" unless $self->{status};
	my $b = $self->{body};
	$b = substr($b, 0, 500) . '...' if length $b > 500;
	return "$self->{status} $b";
}

1;

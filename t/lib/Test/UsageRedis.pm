package Test::UsageRedis;

# Redis for the sync tests (issue 12): a real redis-server per test, and a
# scriptable fake Redis for what a real one will not do.  Core Perl only.
#
#   my $r = Test::UsageRedis->new(%opts);
#
# starts redis-server on a free 127.0.0.1 port in its own temporary
# directory, with no persistence (--save '' --appendonly no), so that a
# restart is an empty Redis, as a managed Redis that lost its data is.  It
# returns once the server answers PING (at most 5 s) and dies otherwise,
# with the server's log: a test that cannot start Redis fails, it never
# skips.  Options:
#   password => P    AUTH P required (requirepass)
#   user => U        with password: an ACL user U with password P and all
#                    permissions, the default user off (AUTH U P required)
#   tls => 1         TLS only (--port 0 --tls-port N), a self-signed
#                    certificate made with openssl in the temp dir
#                    ($r->cert is also its CA: $r->ca)
#   port => N        this port (the default is a free one, and another one
#                    is tried if the server loses the race for it)
#   args => [...]    more redis-server arguments (e.g. --maxmemory 1mb)
#   timeout => S     for start-up and each command (5)
#   server => PATH   the redis-server binary
#
# $r->cmd(@args) sends one command on a new connection (authenticated with
# the object's password and user) and returns the decoded reply: a string
# (bulk or status), an integer, an array ref, undef for nil, or a
# Test::UsageRedis::Error (a blessed {error => 'NOAUTH ...'}, printed as
# "(error) NOAUTH ...") for an error reply or a failed connection (then
# ->io is true).  Over TLS the connection is an "openssl s_client" pipe:
# IO::Socket::SSL is not core, and redis-cli's output loses the reply's
# types.  $r->connect(auth => 0, tls => 0) gives a Test::UsageRedis::Conn
# for several commands, pipelining, raw bytes or blocking reads.
# $r->cli(@args) runs redis-cli with the object's options: (status, output).
#
# $r->stop (SIGTERM, then KILL if it has not exited after 10 s), $r->kill
# (SIGKILL), $r->start (again, same port and options), $r->restart (stop,
# start: empty).  A server runs until stop() or the end of the test, even
# when the test no longer holds its object (as Test::Usage's nginx does):
# at the end, Test::Usage's nginx instances are stopped first, so that an
# nginx that syncs never sees its Redis vanish while it exits.  The temp
# dir is removed unless a test failed or TEST_USAGE_LEAVE is set.
#
#   my $f = Test::UsageRedis::Fake->new(handler => sub {
#       my ($args, $ctx) = @_;    # ['GET', 'k'], {conn => 1, n => 1}
#       return "\$3\r\nbar\r\n";
#   });
#
# listens on a free 127.0.0.1 port (or port => N, e.g. where a stopped
# Redis was), in a forked child that reads commands (RESP arrays, or
# inline commands) from any number of clients and answers each with what
# the handler returns (Test::UsageRedis::Fake has the actions).
# $f->commands lists the commands received, in order, from a log file the
# child appends to; $f->stop ends it (or the end of the test, after
# nginx, like a server).
#
# Environment:
#   REDIS_SERVER   redis-server binary (default: redis-server on PATH)
#   REDIS_CLI      redis-cli binary (default: redis-cli on PATH)

use strict;
use warnings;

use Exporter qw(import);
use File::Path qw(rmtree);
use File::Temp qw(tempdir);
use POSIX qw(:sys_wait_h);
use Test::More ();
use Time::HiRes qw(sleep time);

use Test::Usage qw(wait_until alive);

our @EXPORT_OK = qw(resp_cmd resp_status resp_error resp_int resp_bulk
	resp_nil resp_array redis_error);

# Held to the end: a file-scoped "my $r" is freed when the test's last
# statement has run, before END blocks, and its DESTROY would stop Redis
# while nginx still runs.
my @SERVERS;

###############################################################################
# RESP

# a command as a client sends it: an array of bulk strings
sub resp_cmd {
	my (@args) = @_;
	my $out = '*' . @args . "\r\n";
	for my $a (@args) {
		my $b = $a // '';
		utf8::encode($b) if utf8::is_utf8($b);
		$out .= '$' . length($b) . "\r\n$b\r\n";
	}
	return $out;
}

# replies, for a fake's handler
sub resp_status { "+$_[0]\r\n" }
sub resp_error { "-$_[0]\r\n" }
sub resp_int { ":$_[0]\r\n" }
sub resp_nil { "\$-1\r\n" }
sub resp_array { '*' . @_ . "\r\n" . join('', @_) }

sub resp_bulk {
	my ($b) = @_;
	return resp_nil() unless defined $b;
	utf8::encode($b) if utf8::is_utf8($b);
	return '$' . length($b) . "\r\n$b\r\n";
}

sub redis_error { ref $_[0] && ref $_[0] eq 'Test::UsageRedis::Error' }

sub _error {
	my ($msg, %o) = @_;
	return bless { error => $msg, %o }, 'Test::UsageRedis::Error';
}

# One reply off the front of $$buf: (1, value) when it is whole (and
# removed), () when more bytes are needed; dies on what is not RESP2.
sub resp_parse {
	my ($buf) = @_;
	my $pos = 0;
	my @r = _parse_at($buf, \$pos, 0);
	substr($$buf, 0, $pos, '') if @r;
	return @r;
}

sub _parse_at {
	my ($buf, $pos, $depth) = @_;
	die "RESP nested too deep\n" if $depth > 32;
	my $eol = index($$buf, "\r\n", $$pos);
	return () if $eol < 0;
	my $type = substr($$buf, $$pos, 1);
	my $line = substr($$buf, $$pos + 1, $eol - $$pos - 1);
	my $next = $eol + 2;

	if ($type eq '+') {
		$$pos = $next;
		return (1, $line);
	}
	if ($type eq '-') {
		$$pos = $next;
		return (1, _error($line));
	}
	if ($type eq ':') {
		die "bad RESP integer '$line'\n" unless $line =~ /^-?\d+\z/;
		$$pos = $next;
		return (1, $line + 0);
	}
	if ($type eq '$') {
		die "bad RESP bulk length '$line'\n" unless $line =~ /^-?\d+\z/;
		if ($line < 0) {
			$$pos = $next;
			return (1, undef);
		}
		return () if length($$buf) < $next + $line + 2;
		die "RESP bulk string not followed by CRLF\n"
			unless substr($$buf, $next + $line, 2) eq "\r\n";
		$$pos = $next + $line + 2;
		return (1, substr($$buf, $next, $line));
	}
	if ($type eq '*') {
		die "bad RESP array length '$line'\n" unless $line =~ /^-?\d+\z/;
		if ($line < 0) {
			$$pos = $next;
			return (1, undef);
		}
		my $p = $next;
		my @items;
		for (1 .. $line) {
			my @r = _parse_at($buf, \$p, $depth + 1);
			return () unless @r;
			push @items, $r[1];
		}
		$$pos = $p;
		return (1, \@items);
	}
	die sprintf("not RESP2: type byte 0x%02x\n", ord $type);
}

###############################################################################
# small utilities

# $path to a program: REDIS_SERVER-style override, or found on PATH
sub _which {
	my ($name, $env) = @_;
	return $ENV{$env} if $env && $ENV{$env};
	for my $d (split /:/, $ENV{PATH} // '', -1) {
		my $p = ($d eq '' ? '.' : $d) . "/$name";
		return $p if -f $p && -x _;
	}
	return undef;
}

# run a program, stdin from /dev/null: (exit status $?, stdout + stderr)
sub _run {
	my (@cmd) = @_;
	pipe(my $r, my $w) or die "pipe: $!\n";
	my $pid = fork();
	die "fork: $!\n" unless defined $pid;
	if ($pid == 0) {
		close $r;
		open STDIN, '<', '/dev/null';
		open STDOUT, '>&', $w;
		open STDERR, '>&', $w;
		{ exec { $cmd[0] } @cmd };
		print STDERR "exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	close $w;
	local $/;
	my $out = <$r> // '';
	close $r;
	waitpid($pid, 0);
	return ($?, $out);
}

sub _slurp {
	my ($path) = @_;
	open my $fh, '<', $path or return '';
	binmode $fh;
	local $/;
	my $c = <$fh>;
	return $c // '';
}

sub _tail {
	my ($text, $n) = @_;
	my @lines = split /\n/, $text;
	splice(@lines, 0, @lines - $n) if @lines > $n;
	return join("\n", @lines);
}

# A self-signed certificate for 127.0.0.1 and localhost, which is also its
# own CA (a client verifies it with ca => the same file): (cert, key).
# EC keys: an RSA key takes a good part of a second on a slow machine.
sub make_cert {
	my ($dir, $name) = @_;
	$name //= 'redis';
	my ($cert, $key) = ("$dir/$name.crt", "$dir/$name.key");
	my $openssl = _which('openssl')
		or die "openssl not found (apt-get install openssl; "
		. "scripts/test.sh installs it)\n";
	my ($st, $out) = _run($openssl, 'req', '-x509', '-newkey', 'ec',
		'-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc',
		'-keyout', $key, '-out', $cert, '-days', '7',
		'-subj', '/CN=localhost',
		'-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1');
	die "openssl could not make a certificate:\n$out\n" if $st;
	return ($cert, $key);
}

###############################################################################
# the server

sub new {
	my ($class, %opts) = @_;

	die "Test::UsageRedis: user => needs password =>\n"
		if defined $opts{user} && !defined $opts{password};

	my $server = _which('redis-server', 'REDIS_SERVER')
		or die "redis-server not found (apt-get install redis-server; "
		. "scripts/test.sh installs it)\n";

	my $dir = tempdir('usage-redis-XXXXXXXX', TMPDIR => 1, CLEANUP => 0);

	my $self = bless {
		dir => $dir,
		server => $server,
		host => '127.0.0.1',
		timeout => 5,
		args => [],
		owner => $$,    # a forked child must not stop the server
		%opts,
		fixed_port => defined $opts{port},
	}, $class;

	@$self{qw(cert key)} = make_cert($dir) if $self->{tls};

	push @SERVERS, $self;

	$self->start();
	return $self;
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub dir { $_[0]{dir} }
sub host { $_[0]{host} }
sub addr { "$_[0]{host}:$_[0]{port}" }
sub tls { $_[0]{tls} ? 1 : 0 }
sub cert { $_[0]{cert} }
sub key { $_[0]{key} }
sub ca { $_[0]{cert} }
sub password { $_[0]{password} }
sub user { $_[0]{user} }
sub server_log { _slurp("$_[0]{dir}/redis.log") }
sub running { alive($_[0]{pid}) }
sub exit_status { $_[0]{exit_status} }

sub _server_args {
	my ($self) = @_;
	my @a = ('--bind', $self->{host}, '--save', '', '--appendonly', 'no',
		'--dir', $self->{dir}, '--daemonize', 'no',
		# DEBUG SLEEP makes a slow Redis, from this host only
		'--enable-debug-command', 'local');
	if ($self->{tls}) {
		push @a, '--port', '0', '--tls-port', $self->{port},
			'--tls-cert-file', $self->{cert},
			'--tls-key-file', $self->{key},
			'--tls-ca-cert-file', $self->{cert},
			'--tls-auth-clients', 'no';
	} else {
		push @a, '--port', $self->{port};
	}
	if (defined $self->{user}) {
		# the default user off: only "AUTH user password" gets in
		push @a, '--user', $self->{user}, 'on', ">$self->{password}",
			'~*', '&*', '+@all',
			'--user', 'default', 'off';
	} elsif (defined $self->{password}) {
		push @a, '--requirepass', $self->{password};
	}
	push @a, @{ $self->{args} };
	return @a;
}

# start redis-server (again: same port, same options); dies when it does
# not answer PING in time
sub start {
	my ($self) = @_;
	die "redis-server already running (pid $self->{pid})\n"
		if $self->{pid} && $self->running;

	# a free port may be taken by someone else before redis-server binds
	# it: then another one, unless the test asked for this one
	my $tries = $self->{fixed_port} ? 1 : 3;
	for my $try (1 .. $tries) {
		$self->{port} //= Test::Usage::free_port();
		my $before = length $self->server_log;
		my $why = $self->_start_once();
		return $self unless defined $why;
		my $log = substr($self->server_log, $before);
		if ($try < $tries && $log =~ /Address already in use/
			&& !$self->{started_once})
		{
			delete $self->{port};
			next;
		}
		die "redis-server did not start on $self->{host}:$self->{port}: "
			. "$why\ncommand: $self->{server} "
			. join(' ', map { length ? $_ : "''" } $self->_server_args())
			. "\nlog ($self->{dir}/redis.log):\n" . _tail($log, 20) . "\n";
	}
}

# one attempt: undef when up, else why not
sub _start_once {
	my ($self) = @_;
	my $dir = $self->{dir};
	my @args = $self->_server_args();

	# the log of each run, kept: a restart's log follows the last one's
	my $pid = fork();
	die "fork: $!\n" unless defined $pid;
	if ($pid == 0) {
		open STDIN, '<', '/dev/null';
		open STDOUT, '>>', "$dir/redis.log";
		open STDERR, '>&', \*STDOUT;
		# only this Redis: no credentials from the environment
		delete @ENV{qw(REDISCLI_AUTH)};
		{ exec { $self->{server} } $self->{server}, @args };
		print STDERR "exec $self->{server}: $!\n";
		POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	delete $self->{exit_status};

	my $end = time() + $self->{timeout};
	my $last = '';
	while (1) {
		if ($self->_reap()) {
			delete $self->{pid};
			my $st = $self->{exit_status} // 0;
			return 'it exited with status ' . ($st >> 8)
				. ($st & 127 ? ' (signal ' . ($st & 127) . ')' : '');
		}
		my $reply = $self->cmd_timeout(1, 'PING');
		if (!redis_error($reply) && defined $reply && $reply eq 'PONG') {
			$self->{started_once} = 1;
			return undef;
		}
		$last = "$reply" if defined $reply;
		if (time() > $end) {
			$self->_signal('KILL');
			return "no PONG from pid $pid after $self->{timeout} s, "
				. "killed (last: $last)";
		}
		sleep 0.05;
	}
}

# has our child exited?  Its status goes to exit_status
sub _reap {
	my ($self) = @_;
	my $pid = $self->{pid} or return 1;
	my $w = waitpid($pid, WNOHANG);
	if ($w == $pid) {
		$self->{exit_status} = $?;
		return 1;
	}
	return $w < 0 ? 1 : 0;
}

sub _signal {
	my ($self, $sig, $timeout) = @_;
	my $pid = $self->{pid} or return 1;
	CORE::kill($sig, $pid);
	my $gone = wait_until { $self->_reap() } $timeout // 10;
	delete $self->{pid} if $gone;
	return $gone;
}

# SIGTERM (Redis shuts down: nothing to save here) and wait; KILL if it
# does not exit in 10 s
sub stop {
	my ($self) = @_;
	return $self unless $self->{pid};
	return $self if $self->_signal('TERM');
	Test::More::diag("redis-server $self->{pid} did not exit on TERM, "
		. "sending KILL");
	$self->_signal('KILL');
	return $self;
}

# SIGKILL: Redis dies at once, connections are reset
sub kill {
	my ($self) = @_;
	$self->_signal('KILL') if $self->{pid};
	return $self;
}

# stop and start on the same port: an empty Redis (no persistence)
sub restart {
	my ($self) = @_;
	$self->stop();
	return $self->start();
}

###############################################################################
# clients

# $r->connect(auth => 0: no AUTH; tls => 0: plain even to a TLS port;
# timeout => S): a Test::UsageRedis::Conn (cmd, send_cmd, send_raw,
# read_reply(timeout), close), or a Test::UsageRedis::Error
sub connect {
	my ($self, %o) = @_;
	my $tls = exists $o{tls} ? $o{tls} : $self->{tls};
	my $c = Test::UsageRedis::Conn->new(host => $self->{host},
		port => $self->{port}, timeout => $o{timeout} // $self->{timeout},
		tls => $tls, ca => $self->{cert}, dir => $self->{dir});
	return $c if redis_error($c);
	if (!exists $o{auth} || $o{auth}) {
		my $auth = $self->_auth_args();
		if ($auth) {
			my $ok = $c->cmd(@$auth);
			unless (!redis_error($ok) && $ok eq 'OK') {
				$c->close();
				return redis_error($ok) ? $ok : _error("AUTH answered $ok");
			}
		}
	}
	return $c;
}

sub _auth_args {
	my ($self) = @_;
	return ['AUTH', $self->{user}, $self->{password}] if defined $self->{user};
	return ['AUTH', $self->{password}] if defined $self->{password};
	return undef;
}

# one command on a new (authenticated) connection: its decoded reply
sub cmd {
	my ($self, @args) = @_;
	return $self->cmd_timeout($self->{timeout}, @args);
}

sub cmd_timeout {
	my ($self, $timeout, @args) = @_;
	my $c = $self->connect(timeout => $timeout);
	return $c if redis_error($c);
	my $r = $c->cmd(@args);
	$c->close();
	return $r;
}

# INFO [section], parsed: { redis_version => '7.0.15', ... } (the lines of
# every section in one hash; a reply that is not INFO's gives {})
sub info {
	my ($self, @section) = @_;
	my $text = $self->cmd('INFO', @section);
	return {} if !defined $text || ref $text;
	my %info;
	for my $line (split /\r?\n/, $text) {
		next if $line =~ /^#/ || $line !~ /:/;
		my ($k, $v) = split /:/, $line, 2;
		$info{$k} = $v;
	}
	return \%info;
}

# redis-cli with this server's address, TLS and credentials:
# (exit status $?, stdout + stderr)
sub cli {
	my ($self, @args) = @_;
	my $cli = _which('redis-cli', 'REDIS_CLI')
		or die "redis-cli not found (apt-get install redis-tools; "
		. "scripts/test.sh installs it)\n";
	my @o = ('-h', $self->{host}, '-p', $self->{port});
	push @o, '--tls', '--cacert', $self->{cert} if $self->{tls};
	push @o, '--user', $self->{user} if defined $self->{user};
	push @o, '--pass', $self->{password}, '--no-auth-warning'
		if defined $self->{password};
	local $ENV{REDISCLI_AUTH};
	delete $ENV{REDISCLI_AUTH};
	local $ENV{HOME} = $self->{dir};    # no ~/.redisclirc
	return _run($cli, @o, @args);
}

###############################################################################
# the end

sub _cleanup {
	my ($self) = @_;
	return if $self->{cleaned}++;
	if ($ENV{TEST_USAGE_LEAVE}) {
		Test::More::diag("Redis dir left: $self->{dir}");
		return;
	}
	my $failed = grep { !$_ } Test::More->builder->summary;
	if ($failed) {
		Test::More::diag("Redis dir kept for inspection: $self->{dir}");
		return;
	}
	rmtree($self->{dir});
}

sub DESTROY {
	my ($self) = @_;
	return unless ($self->{owner} // 0) == $$;
	local ($?, $@, $!);
	$self->stop();
	$self->_cleanup();
}

END {
	my $status = $?;
	# nginx first: an instance that syncs must not watch its Redis go
	# while it exits.  This END runs before Test::Usage's (END blocks run
	# last compiled first, and this module loads Test::Usage), so it
	# finishes the nginx instances itself.
	Test::Usage::finish_all() if defined &Test::Usage::finish_all;
	for my $r (@SERVERS, @Test::UsageRedis::Fake::FAKES) {
		next unless ($r->{owner} // 0) == $$;
		$r->stop();
		$r->_cleanup();
	}
	$? = $status;
}

###############################################################################

package Test::UsageRedis::Error;

# An error reply ("-ERR ...") or a failed connection (io => 1).  Prints as
# redis-cli shows an error, so that is($r->cmd(...), 'OK') says what came.

use strict;
use warnings;
use overload '""' => sub { "(error) $_[0]{error}" }, fallback => 1;

sub message { $_[0]{error} }
sub io { $_[0]{io} ? 1 : 0 }

# the error's first word: ERR, NOAUTH, WRONGPASS, WRONGTYPE...
sub code { ($_[0]{error} =~ /^(\S+)/)[0] // '' }

###############################################################################

package Test::UsageRedis::Conn;

# One client connection: a socket, or for TLS an "openssl s_client" whose
# stdin and stdout carry the plain RESP.  Failures come back as
# Test::UsageRedis::Error with io => 1, never as a die: a test may expect
# a connection to fail.

use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

sub new {
	my ($class, %o) = @_;
	$o{host} //= '127.0.0.1';
	my $self = bless { buf => '', timeout => $o{timeout} // 5,
		port => $o{port} }, $class;

	if ($o{tls}) {
		my $openssl = Test::UsageRedis::_which('openssl')
			or return Test::UsageRedis::_error('openssl not found', io => 1);
		pipe(my $in_r, my $in_w) or die "pipe: $!\n";
		pipe(my $out_r, my $out_w) or die "pipe: $!\n";
		my $pid = fork();
		die "fork: $!\n" unless defined $pid;
		if ($pid == 0) {
			close $in_w;
			close $out_r;
			open STDIN, '<&', $in_r;
			open STDOUT, '>&', $out_w;
			open STDERR, '>>', ($o{dir} ? "$o{dir}/s_client.log"
				: '/dev/null');
			# -quiet: only the application data on stdout
			my @cmd = ($openssl, 's_client', '-quiet',
				'-connect', "$o{host}:$o{port}",
				$o{ca} ? ('-CAfile', $o{ca}, '-verify_return_error') : ());
			{ exec { $cmd[0] } @cmd };
			POSIX::_exit(127);
		}
		close $in_r;
		close $out_w;
		binmode $_ for $in_w, $out_r;
		$in_w->autoflush(1);
		@$self{qw(rfh wfh pid)} = ($out_r, $in_w, $pid);
	} else {
		my $s = IO::Socket::INET->new(PeerAddr => $o{host},
			PeerPort => $o{port}, Proto => 'tcp',
			Timeout => $self->{timeout})
			or return Test::UsageRedis::_error(
				"connect to $o{host}:$o{port}: $!", io => 1);
		setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
		binmode $s;
		@$self{qw(rfh wfh)} = ($s, $s);
	}
	return $self;
}

sub close {
	my ($self) = @_;
	for my $k (qw(wfh rfh)) {
		my $fh = delete $self->{$k} or next;
		close $fh;
	}
	if (my $pid = delete $self->{pid}) {
		kill 'TERM', $pid;
		waitpid($pid, 0);
	}
}

sub DESTROY { local ($?, $@, $!); $_[0]->close() }

sub send_raw {
	my ($self, $data) = @_;
	my $fh = $self->{wfh}
		or return Test::UsageRedis::_error('not connected', io => 1);
	local $SIG{PIPE} = 'IGNORE';
	my $off = 0;
	while ($off < length $data) {
		my $n = syswrite($fh, $data, length($data) - $off, $off);
		return Test::UsageRedis::_error("write: $!", io => 1)
			unless defined $n;
		$off += $n;
	}
	return 1;
}

sub send_cmd {
	my ($self, @args) = @_;
	return $self->send_raw(Test::UsageRedis::resp_cmd(@args));
}

# the next reply (timeout in seconds, the connection's by default)
sub read_reply {
	my ($self, $timeout) = @_;
	my $end = time() + ($timeout // $self->{timeout});
	my $fh = $self->{rfh}
		or return Test::UsageRedis::_error('not connected', io => 1);
	my $sel = IO::Select->new($fh);
	while (1) {
		my @r = eval { Test::UsageRedis::resp_parse(\$self->{buf}) };
		if ($@) {
			chomp(my $e = $@);
			return Test::UsageRedis::_error("protocol: $e", io => 1);
		}
		return $r[1] if @r;
		my $left = $end - time();
		return Test::UsageRedis::_error('timeout', io => 1,
			partial => $self->{buf})
			if $left <= 0 || !$sel->can_read($left);
		my $n = sysread($fh, my $chunk, 65536);
		return Test::UsageRedis::_error(
			defined $n ? 'connection closed' : "read: $!", io => 1,
			partial => $self->{buf})
			unless $n;
		$self->{buf} .= $chunk;
	}
}

sub cmd {
	my ($self, @args) = @_;
	my $sent = $self->send_cmd(@args);
	return $sent if Test::UsageRedis::redis_error($sent);
	return $self->read_reply();
}

###############################################################################

package Test::UsageRedis::Fake;

# A Redis that says what the test wants.  The handler gets each command's
# arguments (an array ref of byte strings) and {conn => N (1, 2, ... in
# accept order), n => its command count on that connection}, and returns
# the action:
#   "bytes"                  sent as they are (resp_* in Test::UsageRedis
#                            build replies; anything else is garbage)
#   undef                    no answer at all
#   'close'                  close the connection
#   'reset'                  close it with a TCP RST (SO_LINGER 0)
#   ['close', "bytes"]       send them, then close (a reply cut short)
#   ['sleep', S, ACTION]     ACTION S seconds later (a slow Redis); the
#                            connection's later answers wait behind it,
#                            other connections do not
#   ['steps', ACTION, ...]   each in turn, e.g. half a reply, a pause,
#                            the rest
# A handler that dies answers "-ERR fake: <its message>".  The handler
# runs in the child: its state (closures) lasts for the fake's life across
# connections, but the parent does not see it; what the parent sees is the
# log, $f->commands: [args], in order of arrival, and $f->events: every
# record ({conn, n, args} for commands, {conn, event => 'connect' or
# 'close'}).

use strict;
use warnings;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_LINGER);
use File::Temp qw(tempdir);
use File::Path qw(rmtree);
use Time::HiRes qw(sleep time);

our @FAKES;

# bytes in, bytes out: latin1 maps each byte to one character and back
my $JSON = JSON::PP->new->latin1->canonical;

sub new {
	my ($class, %o) = @_;
	die "Test::UsageRedis::Fake: handler => sub { ... } required\n"
		unless ref $o{handler} eq 'CODE';
	my $dir = tempdir('usage-fake-redis-XXXXXXXX', TMPDIR => 1,
		CLEANUP => 0);
	# listening before the fork: the port accepts as soon as new() returns
	my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
		LocalPort => $o{port} // 0, Proto => 'tcp', Listen => 128,
		ReuseAddr => 1)
		or die "fake redis: cannot listen on 127.0.0.1:"
		. ($o{port} // 0) . ": $!\n";
	my $self = bless { dir => $dir, port => $ls->sockport(), owner => $$,
		log => "$dir/commands.log" }, $class;

	open my $touch, '>', $self->{log} or die "$self->{log}: $!\n";
	close $touch;

	my $pid = fork();
	die "fork: $!\n" unless defined $pid;
	if ($pid == 0) {
		# never return into the test: no END block, no Test::More
		# summary, no nginx stopped by a child
		eval { _serve($ls, $o{handler}, $self->{log}) };
		POSIX::_exit(0);
	}
	close $ls;
	$self->{pid} = $pid;
	push @FAKES, $self;
	return $self;
}

sub port { $_[0]{port} }
sub pid { $_[0]{pid} }
sub dir { $_[0]{dir} }
sub addr { "127.0.0.1:$_[0]{port}" }

# a client connection to the fake (timeout => S)
sub connect {
	my ($self, %o) = @_;
	return Test::UsageRedis::Conn->new(port => $self->{port}, %o);
}

sub events {
	my ($self) = @_;
	open my $fh, '<', $self->{log} or return ();
	my @ev;
	while (my $line = <$fh>) {
		next unless $line =~ /\n\z/;    # a line being written
		push @ev, $JSON->decode($line);
	}
	return @ev;
}

sub commands {
	my ($self) = @_;
	return map { $_->{args} } grep { $_->{args} } $self->events;
}

sub stop {
	my ($self) = @_;
	my $pid = delete $self->{pid} or return $self;
	kill 'TERM', $pid;
	unless (Test::Usage::wait_until(sub { waitpid($pid, WNOHANG) != 0 }, 5)) {
		kill 'KILL', $pid;
		waitpid($pid, 0);
	}
	return $self;
}

sub _cleanup { Test::UsageRedis::_cleanup(@_) }

sub DESTROY {
	my ($self) = @_;
	return unless ($self->{owner} // 0) == $$;
	local ($?, $@, $!);
	$self->stop();
	$self->_cleanup();
}

# the child: one process, every connection in one select loop, so that
# the handler's state is one and a slow answer delays only its connection
sub _serve {
	my ($ls, $handler, $logfile) = @_;
	$SIG{PIPE} = 'IGNORE';
	$SIG{TERM} = sub { POSIX::_exit(0) };
	open my $log, '>>', $logfile or die "$logfile: $!\n";
	binmode $log;
	$log->autoflush(1);
	my $record = sub { print $log $JSON->encode($_[0]) . "\n" };

	my $sel = IO::Select->new($ls);
	my %c;        # fileno -> {sock, id, n, in, out => [[due, action], ...]}
	my $next_id = 0;

	my $drop = sub {
		my ($fd, $how) = @_;
		my $c = delete $c{$fd} or return;
		$sel->remove($c->{sock});
		if ($how && $how eq 'reset') {
			setsockopt($c->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
		}
		close $c->{sock};
		$record->({ conn => $c->{id}, event => 'close' });
	};

	while (1) {
		# the nearest due action bounds the wait
		my $now = time();
		my $wait = 1;
		for my $c (values %c) {
			next unless @{ $c->{out} };
			my $d = $c->{out}[0][0] - $now;
			$wait = $d if $d < $wait;
		}
		$wait = 0 if $wait < 0;

		for my $fh ($sel->can_read($wait)) {
			if ($fh == $ls) {
				my $s = $ls->accept() or next;
				binmode $s;
				$sel->add($s);
				$c{fileno $s} = { sock => $s, id => ++$next_id, n => 0,
					in => '', out => [] };
				$record->({ conn => $next_id, event => 'connect' });
				next;
			}
			my $fd = fileno $fh;
			my $c = $c{$fd} or next;
			my $n = sysread($fh, my $chunk, 65536);
			unless ($n) {
				$drop->($fd);
				next;
			}
			$c->{in} .= $chunk;
			while (defined(my $args = _take_command(\$c->{in}))) {
				if (!ref $args) {    # not a command: as Redis, close
					$record->({ conn => $c->{id}, event => "bad: $args" });
					push @{ $c->{out} }, [time(), 'close'];
					$c->{in} = '';
					last;
				}
				$c->{n}++;
				$record->({ conn => $c->{id}, n => $c->{n}, args => $args });
				my $action = eval {
					$handler->($args, { conn => $c->{id}, n => $c->{n} })
				};
				if ($@) {
					(my $e = $@) =~ s/\s+\z//;
					$e =~ s/[\r\n]+/ /g;
					$action = "-ERR fake: $e\r\n";
				}
				_queue($c, $action);
			}
		}

		# what is due, in order, per connection
		$now = time();
		for my $fd (keys %c) {
			my $c = $c{$fd};
			while ($c && @{ $c->{out} } && $c->{out}[0][0] <= $now) {
				my (undef, $a) = @{ shift @{ $c->{out} } };
				if ($a eq 'close' || $a eq 'reset') {
					$drop->($fd, $a);
					$c = undef;
					last;
				}
				my $off = 0;
				while ($off < length $a) {
					my $w = syswrite($c->{sock}, $a, length($a) - $off, $off);
					last unless defined $w;
					$off += $w;
				}
			}
		}
	}
}

# an action into timed steps: [due, bytes | 'close' | 'reset'], after what
# the connection already waits for
sub _queue {
	my ($c, $action) = @_;
	my $at = @{ $c->{out} } ? $c->{out}[-1][0] : time();
	my $walk;
	$walk = sub {
		my ($a) = @_;
		return unless defined $a;
		if (!ref $a) {
			push @{ $c->{out} }, [$at, $a];
			return;
		}
		my ($kind, @rest) = @$a;
		if ($kind eq 'sleep') {
			$at += $rest[0];
			$walk->($rest[1]);
		} elsif ($kind eq 'close') {
			$walk->($rest[0]);
			push @{ $c->{out} }, [$at, 'close'];
		} elsif ($kind eq 'steps') {
			$walk->($_) for @rest;
		} else {
			push @{ $c->{out} }, [$at, "-ERR fake: unknown action $kind\r\n"];
		}
	};
	$walk->($action);
	undef $walk;
}

# one command off the front of $$in: an array ref of its arguments, undef
# when incomplete, a string (what is wrong) when it is not a command
sub _take_command {
	my ($in) = @_;
	# an inline command, as redis-server takes "PING\r\n" (empty lines
	# are skipped, as it does)
	while (length $$in && substr($$in, 0, 1) ne '*') {
		my $eol = index($$in, "\n");
		return undef if $eol < 0;
		my $line = substr($$in, 0, $eol + 1, '');
		my @args = split ' ', $line;
		return \@args if @args;
	}
	return undef unless length $$in;
	my @r = eval { Test::UsageRedis::resp_parse($in) };
	return "$@" =~ s/\n\z//r if $@;
	return undef unless @r;
	my $v = $r[1];
	return 'not an array of bulk strings'
		unless ref $v eq 'ARRAY' && !grep { !defined || ref } @$v;
	return $v;
}

1;

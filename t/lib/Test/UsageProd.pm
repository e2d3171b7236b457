package Test::UsageProd;

# The shipped production configuration (conf/nginx.prod.conf), the
# Dockerfile and the Debian package it installs, as the tests use them.
# Core Perl only.
#
# prod_conf(%o) returns conf/nginx.prod.conf with the only machine-specific
# parts replaced (each replacement must match, or it dies: a test never runs
# a half-substituted file):
#   listen 8080;                        -> listen 127.0.0.1:<port>;
#   load_module /usr/lib/nginx/...so;   -> load_module <module>;
#   /etc/nginx-usage/                   -> <root>/etc/
#   /run/nginx-usage/                   -> <root>/run/
#   /var/lib/nginx-usage/               -> <root>/state/
#   /var/cache/nginx-usage/             -> <root>/cache/
#   worker_processes auto;              -> worker_processes <workers>;
#                                          (only when workers is given)
# and creates those directories (state and cache owned by "nobody" when
# run as root: workers started by root run as nobody, and so does a test
# that runs nginx as the image's non-root user).
#
# dockerfile() parses the Dockerfile into stages of instructions.
#
# build_package(out => DIR, module => SO, lintian => 0|1, revision => N)
# runs scripts/package on a built module (PACKAGE_NO_BUILD=1) into DIR;
# returns (exit code, output, the .deb's path or undef).

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path);

our @EXPORT_OK = qw(prod_conf prod_conf_path prod_dirs dockerfile
	runtime_stage instr_args json_array build_package);

our $REPO = abs_path(dirname(__FILE__) . '/../../..');

sub prod_conf_path { "$REPO/conf/nginx.prod.conf" }

sub _slurp {
	my ($path) = @_;
	open my $fh, '<', $path or die "cannot read $path: $!\n";
	local $/;
	my $c = <$fh>;
	close $fh;
	return $c;
}

# the image's directories and where a test puts them under its root
our %DIRS = (
	'/etc/nginx-usage/' => 'etc',
	'/run/nginx-usage/' => 'run',
	'/var/lib/nginx-usage/' => 'state',
	'/var/cache/nginx-usage/' => 'cache',
);

sub prod_dirs { %DIRS }

# prod_conf(root => DIR, port => N, module => SO, workers => N,
#     text => CONF (default: the shipped file))
sub prod_conf {
	my (%o) = @_;
	my $root = $o{root} or die "prod_conf: root\n";
	my $conf = $o{text} // _slurp(prod_conf_path());

	my $subst = sub {
		my ($re, $to, $what) = @_;    # $to: a string, or a sub of $1, $2
		my $n = ref $to ? ($conf =~ s/$re/$to->($1, $2)/ge)
			: ($conf =~ s/$re/$to/g);
		die "conf/nginx.prod.conf: no $what to replace\n" unless $n;
	};

	$subst->(qr/^(\s*)listen 8080;/m, sub { "$_[0]listen 127.0.0.1:$o{port};" },
		'"listen 8080;"');
	$subst->(qr{^load_module /usr/lib/nginx/modules/ngx_http_usage_module\.so;}m,
		"load_module $o{module};", 'load_module line');
	for my $from (sort keys %DIRS) {
		my $to = "$root/$DIRS{$from}/";
		$subst->(qr/\Q$from\E/, $to, $from);
	}
	if (defined $o{workers}) {
		$subst->(qr/^worker_processes auto;/m,
			"worker_processes $o{workers};", 'worker_processes auto');
	}

	for my $d (values %DIRS) {
		make_path("$root/$d");
		chmod 0755, "$root/$d";
	}
	if ($> == 0) {
		my $uid = getpwnam('nobody');
		my $gid = getgrnam('nogroup') // getgrnam('nobody');
		chown $uid, $gid, "$root/state", "$root/cache", "$root/run"
			if defined $uid && defined $gid;
	}
	return $conf;
}

###############################################################################
# the Debian package

sub build_package {
	my (%o) = @_;
	my $out = $o{out} or die "build_package: out\n";
	my $module = $o{module} or die "build_package: module\n";
	local $ENV{PACKAGE_NO_BUILD} = 1;
	local $ENV{PACKAGE_MODULE} = $module;
	local $ENV{PACKAGE_OUT} = $out;
	local $ENV{PACKAGE_LINTIAN} = $o{lintian} ? 1 : 0;
	local $ENV{PACKAGE_REVISION} = $o{revision} // 1;
	my $log = `"$REPO/scripts/package" 2>&1`;
	my $code = $? >> 8;
	my ($deb) = $log =~ /^built (\S+\.deb)$/m;
	return ($code, $log, $deb && -f $deb ? $deb : undef);
}

###############################################################################
# the Dockerfile

# [ { from => 'image AS name', name => 'name', instr => [[KEYWORD, ARGS,
#     LINE], ...] }, ... ]; continuation lines joined, comments dropped
sub dockerfile {
	my ($path) = @_;
	$path //= "$REPO/Dockerfile";
	my @stages;
	my @pre;
	my $cur = '';
	my $start;
	my $n = 0;
	for my $line (split /\n/, _slurp($path)) {
		$n++;
		next if $cur eq '' && $line =~ /^\s*(#|$)/;
		next if $cur ne '' && $line =~ /^\s*#/;    # comment inside RUN
		$start = $n if $cur eq '';
		if ($line =~ /^(.*)\\\s*$/) {
			$cur .= "$1 ";
			next;
		}
		$cur .= $line;
		my ($kw, $args) = $cur =~ /^\s*(\S+)\s*(.*?)\s*$/s;
		$cur = '';
		$kw = uc $kw;
		if ($kw eq 'FROM') {
			my ($name) = $args =~ /\bAS\s+(\S+)\s*$/i;
			push @stages, { from => $args, name => $name // '',
				instr => [] };
			next;
		}
		my $list = @stages ? $stages[-1]{instr} : \@pre;
		push @$list, [$kw, $args, $start];
	}
	return { pre => \@pre, stages => \@stages };
}

sub runtime_stage {
	my ($df) = @_;
	return $df->{stages}[-1];
}

# the arguments of every instruction KEYWORD in a stage
sub instr_args {
	my ($stage, $kw) = @_;
	return map { $_->[1] } grep { $_->[0] eq uc $kw } @{ $stage->{instr} };
}

# '["a", "b c"]' -> ('a', 'b c') (a JSON array of strings: exec form)
sub json_array {
	my ($text) = @_;
	require JSON::PP;
	my $v = eval { JSON::PP->new->decode($text) };
	return ref $v eq 'ARRAY' ? @$v : ();
}

1;

#!/usr/bin/perl

# scripts/deps.sh, run against fake system tools on a PATH of their own
# (nothing is installed and no service is touched):
#   - nothing missing: no apt-get at all;
#   - as root: apt-get itself, never sudo; a policy-rc.d that says no
#     (exit 101) is in place while apt-get installs, so no packaged
#     service starts (Debian's nginx would take port 80 and fail the
#     install where it is taken), and it is gone afterwards;
#   - a machine's own policy-rc.d is left as it is;
#   - not root, with sudo: every apt-get through sudo;
#   - not root, no sudo: exit 1, nothing run, and the message says what to
#     run as root.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(slurp);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);

my $root = dirname($FindBin::Bin);
my $script = "$root/scripts/deps.sh";

sub write_exe {
	my ($path, $text) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod 0755, $path or die "chmod $path: $!";
}

# a PATH of fakes and of the few real tools deps.sh needs
sub setup {
	my (%o) = @_;
	my $dir = tempdir(CLEANUP => 1);
	my $bin = "$dir/bin";
	mkdir $bin or die;
	for my $tool (qw(bash sh grep chmod rm cat)) {
		my $real = `sh -c 'command -v $tool'`;
		chomp $real;
		symlink $real, "$bin/$tool" or die "symlink $tool: $!";
	}
	my $log = "$dir/log";
	my $policy = "$dir/policy-rc.d";
	my $missing = join ' ', @{ $o{missing} // [] };
	write_exe("$bin/dpkg-query", <<"EOF");
#!/bin/sh
for p in \$*; do :; done
case " $missing " in
*" \$p "*) exit 1 ;;
esac
echo "install ok installed"
EOF
	write_exe("$bin/id", "#!/bin/sh\necho " . ($o{uid} // 0) . "\n");
	write_exe("$bin/apt-get", <<"EOF");
#!/bin/sh
if [ -x "$policy" ]; then
    "$policy" nginx start; p=\$?
else
    p=none
fi
echo "apt-get \$* (policy: \$p)" >> "$log"
EOF
	write_exe("$bin/sudo", "#!/bin/sh\necho \"sudo \$*\" >> '$log'\nexec \"\$@\"\n")
		if $o{sudo};
	write_exe("$bin/$_", "#!/bin/sh\necho \"$_ \$*\" >> '$log'\n")
		for qw(systemctl update-rc.d);
	if (defined $o{own_policy}) {
		write_exe($policy, $o{own_policy});
	}
	return { dir => $dir, bin => $bin, log => $log, policy => $policy };
}

sub run_deps {
	my ($env, @args) = @_;
	my $out = "$env->{dir}/out";
	local $ENV{PATH} = $env->{bin};
	local $ENV{DEPS_POLICY_RC_D} = $env->{policy};
	system($env->{bin} . '/bash', $script, @args) == -1 and die "exec: $!";
	my $code = $? >> 8;
	return ($code, slurp($env->{log}));
}

# nothing missing
{
	my $env = setup(missing => []);
	my ($code, $log) = run_deps($env);
	is($code, 0, 'nothing missing: exit 0');
	is($log, '', 'nothing missing: no apt-get');
}

# as root
{
	my $env = setup(missing => ['nginx', 'redis-server'], uid => 0);
	local $ENV{HOME} = $env->{dir};
	my ($code, $log) = run_deps($env, 'redis-server');
	is($code, 0, 'as root: exit 0') or diag $log;
	like($log, qr/^apt-get update -qq \(policy: 101\)$/m,
		'as root: apt-get update, no sudo');
	like($log, qr/^apt-get install -y -qq --no-install-recommends nginx redis-server \(policy: 101\)$/m,
		'as root: the missing packages installed with a policy that '
		. 'refuses to start services');
	unlike($log, qr/^sudo /m, 'as root: never sudo');
	ok(!-e $env->{policy}, 'the policy is removed afterwards');
}

# the machine's own policy-rc.d
{
	my $own = "#!/bin/sh\n# the machine's\nexit 104\n";
	my $env = setup(missing => ['nginx'], uid => 0, own_policy => $own);
	my ($code, $log) = run_deps($env);
	is($code, 0, 'own policy: exit 0');
	like($log, qr/^apt-get install .* \(policy: 104\)$/m,
		'own policy: in effect during the install');
	is(slurp($env->{policy}), $own, 'own policy: left as it was');
}

# not root, with sudo
{
	my $env = setup(missing => ['libhiredis-dev'], uid => 1000, sudo => 1);
	my ($code, $log) = run_deps($env);
	is($code, 0, 'with sudo: exit 0') or diag $log;
	like($log, qr/^sudo apt-get update -qq$/m, 'with sudo: update via sudo');
	like($log, qr/^sudo apt-get install -y -qq --no-install-recommends libhiredis-dev$/m,
		'with sudo: install via sudo');
	like($log, qr/^apt-get install .* \(policy: 101\)$/m,
		'with sudo: services refused during the install');
	ok(!-e $env->{policy}, 'with sudo: the policy is removed afterwards');
}

# not root, no sudo
{
	my $env = setup(missing => ['nginx-dev', 'gcc'], uid => 1000);
	my $errfile = "$env->{dir}/stderr";
	local $ENV{PATH} = $env->{bin};
	local $ENV{DEPS_POLICY_RC_D} = $env->{policy};
	system("$env->{bin}/bash $script 2> $errfile");
	my $code = $? >> 8;
	my $err = slurp($errfile);
	is($code, 1, 'no root, no sudo: exit 1');
	like($err, qr/not root, and no sudo: run as root/, 'it says why');
	like($err, qr/apt-get update && apt-get install -y nginx-dev gcc/,
		'it says what to run');
	is(slurp($env->{log}), '', 'no root, no sudo: nothing run');
	ok(!-e $env->{policy}, 'no policy written');
}

done_testing();

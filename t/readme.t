#!/usr/bin/perl

# README's walk through the API is true of the code: every "$ command" of
# its code blocks runs (bash, with PORT set, in order) against
# scripts/run.sh on the shipped configuration, fresh, and prints the
# answer README shows, byte for byte once the wrapping for reading is
# undone and what changes from run to run is masked: event ids, times,
# dates, createdAt; a "..." in README stands for the rest of the answer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(slurp wait_until);
use POSIX ();
use Time::HiRes qw(sleep);

my $root = "$FindBin::Bin/..";

# scripts/run.sh loads the normal build; a sanitizer run tests its own .so
plan skip_all => 'runs the normal build only'
	if ($ENV{USAGE_MODULE} // '') =~ m{/asan/};

chomp(my $curl = `sh -c 'command -v curl'`);
BAIL_OUT('curl is needed (scripts/test.sh installs it)') unless $curl;

# the walk's commands and the answers README gives them
my $readme = slurp("$root/README.md");
my ($walk) = $readme =~ /^## A walk through the API\n(.*?)^## /ms;
ok($walk, 'README has a walk through the API');

my @steps;
for my $block ($walk =~ /^```sh\n(.*?)^```$/msg) {
	my @lines = split /\n/, $block;
	while (@lines) {
		my $line = shift @lines;
		next unless $line =~ s/^\$ //;
		my $cmd = $line;
		while ($cmd =~ /\\$/ && @lines) {
			$cmd .= "\n" . shift @lines;
		}
		# a quoted argument may go on without a backslash
		while (@lines && $lines[0] =~ /^\s{5,}\S/ && $cmd !~ /\\$/
			&& ($cmd =~ tr/'//) % 2)
		{
			$cmd .= "\n" . shift @lines;
		}
		my @answer;
		while (@lines && $lines[0] !~ /^\$ / && $lines[0] ne '') {
			push @answer, shift @lines;
		}
		push @steps, { cmd => $cmd, answer => join("\n", @answer) };
	}
}
cmp_ok(scalar @steps, '>=', 6, scalar(@steps) . ' commands in the walk');

sub mask {
	my ($s) = @_;
	$s =~ s/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/<uuid>/g;
	$s =~ s/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?Z/<time>/g;
	$s =~ s/\d{4}-\d\d-\d\d/<date>/g;
	$s =~ s/"createdAt":\d+/"createdAt":<ms>/g;
	return $s;
}

# README's answer, unwrapped (a wrapped line goes on after a newline and
# a space), as a pattern in which "..." is anything
sub expected_re {
	my ($text) = @_;
	$text =~ s/\n //g;
	my @parts = split /\.\.\./, mask($text), -1;
	my $re = join '.*?', map { quotemeta } @parts;
	return qr/^$re$/s;
}

# scripts/run.sh, fresh, on a free port
my $t = Test::Usage->new();
my ($pid, $prefix, $port, $up) = $t->run_script();
ok($up, 'scripts/run.sh answers') or diag `cat $prefix/out.log`;

for my $step (@steps) {
	local $ENV{PORT} = $port;
	my $cmd = $step->{cmd};
	open my $fh, '-|', 'bash', '-c', $cmd or die "bash: $!";
	my $out = do { local $/; <$fh> } // '';
	close $fh;
	(my $name = $cmd) =~ s/\s+/ /g;
	$name = substr($name, 0, 70);
	if ($step->{answer} eq '') {
		is($?, 0, "$name: runs");
		next;
	}
	like(mask($out), expected_re($step->{answer}),
		"$name: answers as README says")
		or diag "got: $out";
}

kill 'TERM', $pid;
my $gone = wait_until { waitpid($pid, POSIX::WNOHANG()) == $pid } 15;
ok($gone, 'scripts/run.sh stops on SIGTERM');
my $log = slurp("$prefix/out.log") . (-e "$prefix/logs/error.log"
	? slurp("$prefix/logs/error.log") : '');
unlike($log, qr/\[(?:alert|emerg|crit)\]/, 'no alert, emerg or crit');

done_testing();

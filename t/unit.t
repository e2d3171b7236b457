#!/usr/bin/perl

# The C unit tests of t/unit/: each t/unit/*.c is one program that
# includes the module's source files it tests, is compiled with gcc
# against the headers of the nginx tree the build configured (the
# build's own ngx_auto_config.h), and prints TAP.  Each of its lines is a
# check here, and so are its compilation, its exit status and its plan.
# Against an ASan build (USAGE_MODULE under build/asan, as SANITIZE=1
# scripts/test.sh sets it) the programs are built with AddressSanitizer
# and UndefinedBehaviorSanitizer too: any report fails the program.

use strict;
use warnings;

use FindBin;
use Test::More;
use File::Basename qw(basename dirname);
use File::Temp qw(tempdir);

my $root = dirname($FindBin::Bin);
my $module = $ENV{USAGE_MODULE}
	// "$root/build/nginx/ngx_http_usage_module.so";
my $objs = dirname($module);
my $tree = dirname($objs) . '/nginx-src';
my $sanitize = basename($objs) =~ /^asan/;

ok(-f "$objs/ngx_auto_config.h" && -d "$tree/src/core",
	"the build's headers are in $objs and $tree")
	or BAIL_OUT('no configured build: run scripts/build.sh');

my @inc = map { "-I$tree/src/$_" } qw(core event event/modules os/unix);
push @inc, "-I$objs", "-I$root/src";

# the warnings the module is built with (scripts/build.sh, nginx's own)
my @cflags = qw(-pipe -g -W -Wall -Wextra -Wpointer-arith
	-Wno-unused-parameter -Werror);
push @cflags, $sanitize
	? ('-O1', '-fno-omit-frame-pointer', '-fsanitize=address,undefined',
		'-fno-sanitize-recover=undefined')
	: ('-O2', '-D_FORTIFY_SOURCE=2');

my $tmp = tempdir('usage-unit-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

opendir(my $dh, "$root/t/unit") or die "t/unit: $!\n";
my @programs = sort grep { /\.c$/ } readdir $dh;
closedir $dh;

ok(@programs > 0, 'there are unit tests in t/unit');

for my $c (@programs) {
	(my $name = $c) =~ s/\.c$//;
	my $bin = "$tmp/$name";

	my $out = `gcc @cflags @inc -o $bin $root/t/unit/$c -lm 2>&1`;
	ok($? == 0, "$name: compiles" . ($sanitize ? ' with ASan and UBSan' : ''))
		or do { diag($out); next };

	$out = `$bin 2>&1`;
	my $status = $?;
	my ($count, $plan, $failed) = (0, undef, 0);

	for (split /\n/, $out) {
		if (/^(not )?ok (\d+) - (.*)$/) {
			$count++;
			$failed++ if $1;
			ok(!$1, "$name: $3");
		} elsif (/^1\.\.(\d+)$/) {
			$plan = $1;
		}
	}

	ok($status == 0 && !$failed, "$name: exits 0")
		or diag(($status & 127 ? 'killed by signal ' . ($status & 127)
			: 'exit status ' . ($status >> 8)) . ":\n$out");
	ok(defined $plan && $plan == $count && $count > 0,
		"$name: ran its whole plan ($count checks)")
		or diag($out);
	unlike($out, qr/AddressSanitizer|runtime error:|LeakSanitizer/,
		"$name: no sanitizer report");
}

done_testing();

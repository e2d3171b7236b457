#!/usr/bin/perl

# scripts/fuzz for a short while, as CI runs it: once with a fixed seed and
# once with a random one (printed; TEST_USAGE_FUZZ_SEED replays it), each
# against its own nginx (2 workers, kept-alive connections, 127.0.0.1).
# Passes only if the fuzzer exits 0: no answer of an API route that is not
# strict JSON, no 5xx, no hang, every 4xx the error envelope, nothing in
# error.log.  TEST_USAGE_FUZZ_SECONDS sets the time of each run (4).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;

my $fuzz = "$FindBin::Bin/../scripts/fuzz";
my $seconds = $ENV{TEST_USAGE_FUZZ_SECONDS} || 4;
my $random = $ENV{TEST_USAGE_FUZZ_SEED} || (time() ^ ($$ << 8)) % 1_000_000_000;

diag("fuzz seeds 1 and $random (TEST_USAGE_FUZZ_SEED=$random replays the "
	. 'second)');

for my $seed (1, $random) {
	my $out = qx{$^X $fuzz --seconds $seconds --seed $seed 2>&1};
	my $rc = $? >> 8;
	my ($n) = $out =~ /^fuzz: (\d+) requests/m;
	is($rc, 0, "scripts/fuzz --seed $seed --seconds $seconds exits 0")
		? note($out) : diag($out);
	ok(($n // 0) > 100, "seed $seed: " . ($n // 0) . ' requests sent');
}

done_testing();

#!/usr/bin/perl

# uptime.human past one minute ("Xm Ys"); takes 61 s, so it runs only with
# TEST_USAGE_SLOW=1.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf);

plan(skip_all => 'set TEST_USAGE_SLOW=1 to run (61 s)')
	unless $ENV{TEST_USAGE_SLOW};

my $t = Test::Usage->new();
$t->write_config(api_conf())->run();

sleep 61;

my $d = $t->get('/v1/usage/stats')->data;
like($d->{uptime}{human} // '', qr/^1m [0-9]s$|^1m 1[0-9]s$/, 'uptime Xm Ys');
ok($d->{uptime}{ms} >= 61000, 'uptime.ms');
like($t->get('/info')->json->{uptime}{human} // '', qr/^1m \d+s$/,
	'info uptime Xm Ys');

$t->done_testing();

#!/usr/bin/perl

# README's quick start is conf/quickstart.conf: its http block is the
# file's, byte for byte, and its load_module line too; that file, with its
# port made free and the module's path made absolute, passes "nginx -t"
# and runs: an event POSTed is counted in its summary, and the API's own
# calls are metered as api-self.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(slurp wait_until);

my $root = "$FindBin::Bin/..";

my $conf = slurp("$root/conf/quickstart.conf");
my $readme = slurp("$root/README.md");

my ($http) = $conf =~ /^(http \{\n.*?^\})$/ms;
ok($http, 'conf/quickstart.conf has an http block');
my ($section) = $readme =~ /^## Quick start.*?\n(.*?)^## /ms;
ok($section, 'README has a quick start');
like($section, qr/```nginx\n\Q$http\E\n```/, 'README shows that http block');
my ($load) = $conf =~ /^(load_module \S+;)$/m;
like($section, qr/^    \Q$load\E$/m, 'and its load_module line');

my $t = Test::Usage->new();
(my $block = $http) =~ s/listen 8080;/listen 127.0.0.1:%%PORT%%;/
	or die 'no listen 8080 in the block';

# the whole file, as nginx -t reads it
(my $whole = $conf) =~ s{^load_module \S+;$}{load_module ${\ $t->module };}m;
$whole =~ s/listen 8080;/listen 127.0.0.1:%%PORT%%;/;
my ($code, $out) = $t->check_config($whole);
is($code, 0, 'the file passes nginx -t') or diag $out;

$t->write_config($block)->run();

my $r = $t->post_event('quick-1', 'api_call');
is($r->status, 201, 'a POST is stored');
is($t->get('/v1/usage/quick-1')->data->{totalEvents}, 1,
	'and counted in its summary');
ok(wait_until(sub {
	($t->get('/v1/usage/api-self')->data->{totalEvents} // 0) >= 2 }),
	'the API meters its own calls');

$t->done_testing();

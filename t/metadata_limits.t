#!/usr/bin/perl

# Configured metadata limits: usage_metadata_max_size 100 and
# usage_metadata_max_depth 3 ("metadata must be 100 bytes or less",
# "metadata is nested too deeply"), with the boundaries well inside/outside.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Test::Usage qw(api_conf json_encode);

my $t = Test::Usage->new();
$t->write_config(api_conf(http => '
    usage_metadata_max_size 100;
    usage_metadata_max_depth 3;
'))->run();

sub post {
	my ($meta) = @_;
	return $t->post_json('/v1/events',
		{ entityId => 'm', eventType => 'm', metadata => $meta });
}

my $r = post({ a => 'x' x 50 });
is($r->status, 201, 'small metadata') or diag $r->describe;

$r = post({ a => 'x' x 150 });
is($r->status, 400, 'metadata over 100 bytes');
is($r->err->{message}, 'metadata must be 100 bytes or less', 'size message');

$r = post({ a => "\x{20ac}" x 30 });
is($r->status, 201, '30 three-byte chars (90 bytes + quotes)')
	or diag $r->describe;
$r = post({ a => "\x{20ac}" x 40 });
is($r->status, 400, '40 three-byte chars: bytes, not characters');
is($r->err->{message}, 'metadata must be 100 bytes or less',
	'size counted in bytes');

$r = post({ a => { b => 1 } });
is($r->status, 201, 'depth 2') or diag $r->describe;

$r = post({ a => { b => { c => { d => { e => 1 } } } } });
is($r->status, 400, 'depth 5');
is($r->err->{message}, 'metadata is nested too deeply', 'depth message');

$r = post({ a => [[[[[1]]]]] });
is($r->status, 400, 'arrays count as nesting');
is($r->err->{message}, 'metadata is nested too deeply', 'arrays message');

$r = $t->post_json('/v1/events', { entityId => '', eventType => 'm',
	metadata => { a => { b => { c => { d => { e => 1 } } } } } });
is($r->err->{message}, 'entityId is required, metadata is nested too deeply',
	'joined with other errors');

$t->done_testing();

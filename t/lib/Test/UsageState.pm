package Test::UsageState;

# Reads and rewrites the module's state file (src/ngx_http_usage_state.c,
# format version 4) for the tests that craft one: where each record
# starts, and a version 1 file made from a version 4 one.  Little-endian
# machines only, as the tests run.

use strict;
use warnings;

our $HEADER = 64;    # magic, version, order, length, crc, generation,
                     # dataset, saved_at, start_time, last_created

my $COUNTERS = 8 * 8 + 128 * 16;

# a fleet's origin slot: id, seen, its window (hwm, holes, lost, 1024 bits)
my $ORIGIN = 8 + 8 + 3 * 8 + 1024 / 8;

# the IEEE CRC32 that nginx's ngx_crc32_long() computes
sub crc32 {
	my ($data) = @_;
	my $crc = 0xffffffff;
	for my $byte (unpack 'C*', $data) {
		$crc ^= $byte;
		for (1 .. 8) {
			$crc = ($crc & 1) ? (($crc >> 1) ^ 0xedb88320) : ($crc >> 1);
		}
	}
	return $crc ^ 0xffffffff;
}

# the header's length and checksum, after an edit of the payload
sub reseal {
	my ($bytes) = @_;
	my $payload = substr($bytes, $HEADER);
	substr($bytes, 16, 8) = pack('Q<', length $payload);
	substr($bytes, 24, 4) = pack('V', crc32($payload));
	return $bytes;
}

sub version { unpack('V', substr($_[0], 8, 4)) }

# the records of a version 2 file: names with their offsets, raw events
# with the offsets of their id and metadata, client ids
sub parse {
	my ($bytes) = @_;
	my $at = $HEADER + $COUNTERS;
	my $take = sub {
		my ($tmpl, $len) = @_;
		my @v = unpack($tmpl, substr($bytes, $at, $len));
		$at += $len;
		return wantarray ? @v : $v[0];
	};
	my $name = sub {
		my $len = $take->('v', 2);
		my %n = (at => $at, len => $len, name => substr($bytes, $at, $len));
		$at += $len;
		return \%n;
	};
	my %s = (types => [], entities => [], raw => [], ids => []);

	my $ntypes = $take->('V', 4);
	for (1 .. $ntypes) {
		my $n = $name->();
		my $nb = $take->('V', 4);
		$at += 16 * $nb;
		push @{ $s{types} }, $n;
	}

	my $nentities = $take->('V', 4);
	for (1 .. $nentities) {
		my $n = $name->();
		$at += 8;
		my $nseries = $take->('V', 4);
		for (1 .. $nseries) {
			my ($ti, $nb) = $take->('V V', 8);
			$at += 28 * $nb;
		}
		push @{ $s{entities} }, $n;
	}

	my $nraw = $take->('V', 4);
	for (1 .. $nraw) {
		my %r;
		@r{qw(entity type time created value)} = $take->('V V q< q< d<', 32);
		$at += 16 + 1;
		my ($idl, $ml) = $take->('v V', 6);
		@r{qw(id_at id_len metadata_at metadata_len)} =
			($at, $idl, $at + $idl, $ml);
		$r{id} = substr($bytes, $at, $idl);
		$r{metadata} = substr($bytes, $at + $idl, $ml);
		$at += $idl + $ml;
		push @{ $s{raw} }, \%r;
	}

	$s{ids_at} = $at;
	my $nids = $take->('V', 4);
	for (1 .. $nids) {
		my %i;
		@i{qw(time raw entity_len id_len)} = $take->('q< V v v', 16);
		$i{entity} = substr($bytes, $at, $i{entity_len});
		$i{id} = substr($bytes, $at + $i{entity_len}, $i{id_len});
		$at += $i{entity_len} + $i{id_len};
		push @{ $s{ids} }, \%i;
	}

	# version 3: the fleet's part (usage_sync), or a 0; 4: with the epoch
	# and the receipt of the queue's oldest event
	$s{fleet_at} = $at;
	if (version($bytes) >= 3 && $take->('V', 4)) {
		my ($origin, $seq, $read_ms, $read_seq) = $take->('Q< Q< Q< Q<', 32);
		my ($epoch, $queued_from) = (0, 0);
		($epoch, $queued_from) = $take->('Q< q<', 16) if version($bytes) >= 4;
		my $n = $take->('V', 4);
		$s{fleet} = { origin => $origin, seq => $seq, read_ms => $read_ms,
			read_seq => $read_seq, epoch => $epoch,
			queued_from => $queued_from, origins => $n };
		$at += $n * $ORIGIN;
	}

	die "state file: " . (length($bytes) - $at) . " bytes after the fleet\n"
		unless $at == length $bytes;

	return \%s;
}

# the same store as a version 1 file: its client ids hold a hash (of no
# use to a newer module) instead of their entity and id, and no fleet
sub to_v1 {
	my ($bytes) = @_;
	my $s = parse($bytes);
	my $ids = pack('V', scalar @{ $s->{ids} });
	for my $i (@{ $s->{ids} }) {
		$ids .= pack('Q< q< V', 81985529216486895, $i->{time}, $i->{raw});
	}
	substr($bytes, $s->{ids_at}) = $ids;
	substr($bytes, 8, 4) = pack('V', 1);
	return reseal($bytes);
}

1;

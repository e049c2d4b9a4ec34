#!/usr/bin/env bash
# byhand.sh runs the block of README.md's "Running a federation by hand" as
# someone who pastes it into bash would — three coordinators and three
# MNIST participants on this machine's loopback — and checks that it ends
# with a trained model (round 1 or later) pulled into
# federation/model.safetensors. `make byhand` builds the binary and runs it.
#
#   tools/byhand.sh [ACCORD_BINARY]     (default: bin/accord)
#
# The block runs in a temporary folder, with its `go build` line replaced by
# a copy of the binary (the folder is not a checkout). It stops at its first
# failing command, after at most BYHAND_TIMEOUT seconds (default 900); the
# coordinators and participants it started are stopped when it ends. It
# needs the ports the block names (127.0.0.1:7701-7723, 9101-9103) free, and
# Go's module proxy or cache for MNIST (see README.md, "First commands").
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
binary=${1:-$root/bin/accord}
[ -x "$binary" ] || { echo "byhand: no accord binary at $binary (make build makes bin/accord)" >&2; exit 1; }
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

work=$(mktemp -d "${TMPDIR:-/tmp}/accord-byhand.XXXXXX")
keep=${BYHAND_KEEP:-}
cleanup() { if [ -z "$keep" ]; then rm -rf "$work"; else echo "byhand: left $work" >&2; fi; }
trap cleanup EXIT

# The block: the first ```sh fence after the heading, up to its closing fence.
awk '/^## Running a federation by hand/ { section = 1 }
     section && !inblock && /^```sh$/ { inblock = 1; next }
     inblock && /^```$/ { exit }
     inblock { print }' "$root/README.md" > "$work/block.sh"
build='go build -o accord ./cmd/accord'
if ! grep -qxF "$build" "$work/block.sh"; then
	echo "byhand: README.md's by-hand block has no line '$build' to replace with the built binary; update tools/byhand.sh" >&2
	exit 1
fi
sed -i "s|^go build -o accord ./cmd/accord\$|cp \"\$ACCORD_BINARY\" accord|" "$work/block.sh"

for port in 7701 7702 7703 7711 7712 7713 7721 7722 7723 9101 9102 9103; do
	if (: < "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "byhand: something already listens on 127.0.0.1:$port, which the block uses; stop it first" >&2
		exit 1
	fi
done

echo "byhand: running README.md's by-hand block in $work with $binary"
status=0
(
	cd "$work"
	# Like a shell the block is pasted into, but stopping at the first
	# failing command; on the way out, stop what the block started.
	ACCORD_BINARY=$binary timeout --kill-after 10 "${BYHAND_TIMEOUT:-900}" bash -c '
		stop() { kill $(jobs -p) 2>/dev/null || true; wait; }
		trap stop EXIT
		trap "exit 1" TERM INT
		set -e -x
		. ./block.sh
	'
) || status=$?
if [ "$status" -ne 0 ]; then
	echo "byhand: the block failed (exit $status); the last lines of its logs:" >&2
	for log in "$work"/federation/*.log; do
		[ -f "$log" ] && { echo "== $log" >&2; tail -n 5 "$log" >&2; }
	done
	keep=1
	exit 1
fi

model=$work/federation/model.safetensors
[ -s "$model" ] || { echo "byhand: the block ended without writing federation/model.safetensors" >&2; keep=1; exit 1; }
# The safetensors header's metadata names the round pulled ("round":"N").
round=$(head -c 65536 "$model" | grep -ao '"round":"[0-9]*"' | head -n 1 | tr -dc 0-9)
if [ -z "$round" ] || [ "$round" -lt 1 ]; then
	echo "byhand: federation/model.safetensors is round '${round:-?}', not a trained model (round 1 or later)" >&2
	keep=1
	exit 1
fi
echo "byhand: ok, the block pulled the model of round $round"

# Shared by init.sh and proto.sh (sourced): a scratch directory removed at exit, a test key, and
# check NAME ACTUAL EXPECTED, which counts and reports; finish prints the tally and fails on any.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
KEY=MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=

check() {
	if [ "$2" = "$3" ]; then
		passed=$((passed + 1))
		echo "ok: $1"
	else
		failed=$((failed + 1))
		echo "FAIL: $1"
		printf '%s\n' "--- expected" "$3" "--- actual" "$2"
	fi
}

finish() { # WHAT
	echo "$1: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

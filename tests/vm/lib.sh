# Helpers for the guest's case scripts (busybox sh). Busybox's shell runs its own applets even
# when a real tool is first in PATH, so the real tools are called by full path.
IP=/usr/sbin/ip
GENL=/usr/sbin/genl
WG=/usr/bin/wg
PING=/usr/bin/ping
WESHER=/usr/local/bin/wesher

# Test topology: one bridge, NODES namespaces each with a veth on it and SUBNET.N/24.
NODES="1 2 3"
BRIDGE=br0
SUBNET=192.168.77

# The init registers cases; in a case's own shell the registrations are no-ops.
case_add() { :; }

# Ends the case as failed, with a reason the summary line shows; a case file may define
# on_fail to print diagnostics first.
fail() {
    if command -v on_fail >/dev/null; then on_fail; fi
    echo "REASON: $*"
    exit 1
}
# Ends the case as skipped (the host turns that into a failure where it must).
skip() {
    echo "REASON: $*"
    exit 77
}
# Reports a result for a part of the case: PASS|FAIL|SKIP NAME [REASON].
subresult() {
    echo "$1 $2${3:+: $3}" >>/tmp/subresults
}
# A line for the console as it is (a measurement), printed after the case's result lines.
report() {
    echo "$*" >>/tmp/reports
}
# Runs a command, failing the case with its output when it fails.
must() {
    out=$("$@" 2>&1) || {
        printf '%s\n' "$out"
        fail "command failed: $*"
    }
    [ -z "$out" ] || printf '%s\n' "$out"
}
# Runs a command in namespace nodeN.
in_node() {
    n=$1
    shift
    $IP netns exec "node$n" "$@"
}
# Retries a command every half second for up to SECONDS; its last output is shown on failure.
wait_for() { # SECONDS DESCRIPTION CMD...
    tries=$(($1 * 2)) what=$2
    shift 2
    while [ "$tries" -gt 0 ]; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        sleep 0.5
        tries=$((tries - 1))
    done
    printf '%s\n' "$out"
    fail "timed out waiting for: $what"
}
# Prints PROCESS-ID's state letter, or nothing when it is gone.
proc_state() {
    [ -r "/proc/$1/stat" ] && cut -d' ' -f3 "/proc/$1/stat"
}
# Waits for PID to exit (it is not our child when started by another case's shell).
wait_exit() { # SECONDS PID
    tries=$(($1 * 2))
    while [ "$tries" -gt 0 ]; do
        st=$(proc_state "$2")
        [ -z "$st" ] || [ "$st" = Z ] && return 0
        sleep 0.5
        tries=$((tries - 1))
    done
    return 1
}

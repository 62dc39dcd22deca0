# The crate's integration tests that need kernel WireGuard (tests/kernel_wireguard.rs) or a real
# kernel's netlink (tests/netlink_netns.rs), built on the host as static musl test executables in
# /tests/bin. WESHER_EXPECT_KERNEL_WG=1 makes them fail instead of skip when the kernel lacks
# WireGuard. Each libtest result becomes its own PASS/FAIL/SKIP line. The host reports a missing
# test file (a failure under CI) before boot.

for t in /tests/bin/*; do
    [ -x "$t" ] && case_add "cargo-test/${t##*/}" 600 "cargo_test ${t##*/}"
done

cargo_test() { # NAME
    # The tests need these loaded (ip tuntap opens /dev/net/tun), also when run alone.
    must modprobe -a wireguard veth bridge tun
    WESHER_EXPECT_KERNEL_WG=1 RUST_BACKTRACE=1 "/tests/bin/$1" --test-threads=1 >/tmp/cargo-test.out 2>&1
    rc=$?
    cat /tmp/cargo-test.out
    # libtest prints "test NAME ... ok|FAILED|ignored" (ignored may carry ", reason").
    sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\).*$/\2 \1/p' /tmp/cargo-test.out >/tmp/cargo-test.results
    ran=0
    while read -r verdict name; do
        case $verdict in
        ok) subresult PASS "$1::$name" ;;
        FAILED) subresult FAIL "$1::$name" ;;
        *) subresult SKIP "$1::$name" "ignored" ;;
        esac
        ran=$((ran + 1))
    done </tmp/cargo-test.results
    [ "$ran" -gt 0 ] || fail "the test executable reported no tests (exit $rc)"
    [ "$rc" = 0 ] || fail "the test executable exited $rc"
}

# The library's kernel-WireGuard integration tests (tests/kernel_wireguard.rs), built on the host
# as a static musl test executable; WESHER_EXPECT_KERNEL_WG=1 makes them fail instead of skip
# when the kernel lacks WireGuard. Each libtest result becomes its own PASS/FAIL/SKIP line.
# The host reports the executable's absence (a failure under CI) before boot.

KWG_BIN=/tests/kernel_wireguard
[ -x "$KWG_BIN" ] && case_add kernel_wireguard 600 kernel_wireguard_tests
kernel_wireguard_tests() {
    WESHER_EXPECT_KERNEL_WG=1 RUST_BACKTRACE=1 "$KWG_BIN" --test-threads=1 >/tmp/kwg.out 2>&1
    rc=$?
    cat /tmp/kwg.out
    # libtest prints "test NAME ... ok|FAILED|ignored" (ignored may carry ", reason").
    sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\).*$/\2 \1/p' /tmp/kwg.out >/tmp/kwg.results
    ran=0
    while read -r verdict name; do
        case $verdict in
        ok) subresult PASS "kernel_wireguard::$name" ;;
        FAILED) subresult FAIL "kernel_wireguard::$name" ;;
        *) subresult SKIP "kernel_wireguard::$name" "ignored" ;;
        esac
        ran=$((ran + 1))
    done </tmp/kwg.results
    [ "$ran" -gt 0 ] || fail "the test executable reported no tests (exit $rc)"
    [ "$rc" = 0 ] || fail "the test executable exited $rc"
}

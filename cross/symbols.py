"""Sum `llvm-nm --print-size --size-sort --demangle` output (stdin) by crate; print the biggest.

The crate of a symbol is the first path segment of its demangled name, looking through the
`<Type as Trait>` and `&`/`dyn`/`impl` wrappers: it is the crate that defines the type or function.
Symbols with no Rust path are C code: musl, compiler-rt.
"""

import re
import sys
from collections import defaultdict

TOP_CRATES = 15
TOP_SYMBOLS = 10


def crate_of(name):
    stripped = re.sub(r"^(?:[<&*(\[]|dyn |impl |mut |const )+", "", name)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", stripped)
    return m.group(1) if m else "C"


def main():
    by_crate = defaultdict(lambda: [0, 0])  # crate -> [code bytes, data bytes]
    symbols = []
    for line in sys.stdin:
        parts = line.split(None, 3)
        if len(parts) != 4:
            continue  # symbols without a size
        size, kind, name = int(parts[1], 16), parts[2], parts[3].strip()
        if kind in "tTwW":
            by_crate[crate_of(name)][0] += size
        elif kind in "rRdDvV":
            by_crate[crate_of(name)][1] += size
        else:
            continue  # .bss takes no space in the file
        symbols.append((size, name))
    total = sum(c + d for c, d in by_crate.values())
    print(f"  {'crate':<24} {'code':>8} {'data':>8} {'share':>6}")
    ranked = sorted(by_crate.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for crate, (code, data) in ranked[:TOP_CRATES]:
        print(f"  {crate:<24} {code:>8} {data:>8} {100 * (code + data) / max(total, 1):>5.1f}%")
    rest = ranked[TOP_CRATES:]
    if rest:
        r = sum(c + d for _, (c, d) in rest)
        print(f"  {f'({len(rest)} more)':<24} {r:>17} {100 * r / max(total, 1):>5.1f}%")
    print(f"  {'total in symbols':<24} {total:>17}")
    print("  largest symbols:")
    for size, name in sorted(symbols, reverse=True)[:TOP_SYMBOLS]:
        print(f"  {size:>8}  {name[:100]}")


if __name__ == "__main__":
    main()

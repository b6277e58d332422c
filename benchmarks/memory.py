"""Memory layer throughput: alloc/add_ref/dec_ref/release, MALLOC_DEBUG off vs on.

Run: ``python benchmarks/memory.py [--cycles N] [--blocks N]``. Prints cycles/s for
  * plain    - the same objects built without a pool, with the same reference book-keeping
               done by hand in a dict (the "plain object creation" baseline),
  * normal   - PoolFactory(malloc_debug=False),
  * debug    - PoolFactory(malloc_debug=True) with the default 4-frame stacks, and with
               1-frame stacks (``debug/1``): walking frames is most of MALLOC_DEBUG's cost,
all measured in this run, and the ratios the targets are stated in:
normal/plain <= 1.10 and debug/normal <= 2.0 (time ratios; lower is better).

It also measures the per-access cost (attribute read + write + method call) of a live block
against a plain object: the "MALLOC_DEBUG off costs nothing" rule is about accesses, since a
normal-mode block *is* an instance of its own class with no check on any access.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import attrs

from invsess.memory import PoolFactory, RefCounted


@attrs.define(eq=False)
class Session(RefCounted):
    """A block of the size and shape of a small state object."""

    call_id: str
    state: int = 0

    def touch(self) -> int:
        """A method that reads and writes state."""
        self.state += 1
        return self.state


@attrs.define(eq=False)
class PlainSession:
    """The same object without the memory layer; references kept by hand."""

    call_id: str
    state: int = 0
    owners: dict[str, int] = attrs.field(factory=dict)
    count: int = 0

    def touch(self) -> int:
        """Same as Session.touch."""
        self.state += 1
        return self.state


def access_loop(obj: Session | PlainSession, n: int) -> None:
    touch = obj.touch
    for _ in range(n):
        obj.state = obj.state + touch()


def plain_cycle(blocks: int) -> None:
    live = []
    for i in range(blocks):
        s = PlainSession("c")
        s.owners["app"] = s.owners.get("app", 0) + 1
        s.count += 1
        s.state = i
        s.owners["app"] -= 1
        s.count -= 1
        live.append(s)
    live.clear()


def make_pool_cycle(debug: bool, stack_depth: int = 4) -> Callable[[int], None]:
    factory = PoolFactory(malloc_debug=debug, stack_depth=stack_depth)

    def cycle(blocks: int) -> None:
        pool = factory.create_pool("dlg", 4096, 4096)
        alloc = pool.alloc
        for i in range(blocks):
            s = alloc(Session, "c")
            s.add_ref("app")
            s.state = i
            s.dec_ref("app")
        pool.release("benchmark")

    return cycle


def measure(fn: Callable[[int], None], cycles: int, blocks: int) -> float:
    """Best of 5 runs, seconds per cycle."""
    best = float("inf")
    for _ in range(5):
        gc.collect()
        start = time.perf_counter()
        for _ in range(cycles):
            fn(blocks)
        best = min(best, (time.perf_counter() - start) / cycles)
    return best


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=100, help="blocks allocated per pool per cycle")
    args = parser.parse_args()
    plain = measure(plain_cycle, args.cycles, args.blocks)
    normal = measure(make_pool_cycle(False), args.cycles, args.blocks)
    debug = measure(make_pool_cycle(True), args.cycles, args.blocks)
    debug1 = measure(make_pool_cycle(True, stack_depth=1), args.cycles, args.blocks)
    per = args.blocks
    n = args.blocks * args.cycles
    plain_obj = PlainSession("c")
    normal_obj = PoolFactory(malloc_debug=False).create_pool("a").alloc(Session, "c")
    debug_obj = PoolFactory(malloc_debug=True).create_pool("b").alloc(Session, "c")
    access = {
        name: measure(lambda _n, o=obj: access_loop(o, n), 1, 0) / n  # type: ignore[misc]
        for name, obj in (("plain", plain_obj), ("normal", normal_obj), ("debug", debug_obj))
    }
    print(f"blocks per cycle: {per}")
    rows = (("plain", plain), ("normal", normal), ("debug", debug), ("debug/1", debug1))
    for name, t in rows:
        print(f"{name:7s} {1 / t:10.0f} cycles/s  {t / per * 1e9:8.0f} ns/block")
    print(f"normal/plain time ratio: {normal / plain:.2f} (target <= 1.10)")
    print(f"debug/normal time ratio: {debug / normal:.2f} (target <= 2.00; stack_depth=4, the default)")
    print(f"debug/normal time ratio: {debug1 / normal:.2f} (stack_depth=1: one frame per stack)")
    print("per access (read + write + method call):")
    for name, t in access.items():
        print(f"{name:7s} {t * 1e9:8.1f} ns")
    print(f"access normal/plain: {access['normal'] / access['plain']:.2f}")
    print(f"access debug/normal: {access['debug'] / access['normal']:.2f}")


if __name__ == "__main__":
    main()

"""Runs every `test_*` function of every `test_*.py` beside this file, in file order.

Prints one line per test and a last line `python: N passed, M failed[, K skipped]`;
exits non-zero when a test failed. Usage: python3 run.py [substring-filter].
"""

import importlib
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    passed = failed = skipped = 0
    started = time.monotonic()
    modules = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    for name in modules:
        module = importlib.import_module(name)
        tests = [
            (n, f) for n, f in vars(module).items()
            if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == name
        ]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for test_name, fn in tests:
            full = f"{name}.{test_name}"
            if only and only not in full:
                continue
            t0 = time.monotonic()
            try:
                fn()
            except harness.Skip as e:
                skipped += 1
                print(f"SKIP {full}: {e}", flush=True)
                continue
            except Exception:  # noqa: BLE001 - every failure is reported and counted
                failed += 1
                print(f"FAIL {full} ({time.monotonic() - t0:.2f} s)", flush=True)
                traceback.print_exc()
                continue
            passed += 1
            print(f"PASS {full} ({time.monotonic() - t0:.2f} s)", flush=True)
    harness.stop_server()
    print(f"python tests took {time.monotonic() - started:.1f} s", flush=True)
    tail = f", {skipped} skipped" if skipped else ""
    print(f"python: {passed} passed, {failed} failed{tail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# registry-suite: schemathesis timeout=400 needs=schemathesis:schemathesis
"""A bounded fuzz run of the registry's HTTP API from its own OpenAPI files (issue 9: "a fuzz run of the API from
its own OpenAPI files (schemathesis from PyPI): no 5xx, no crash").

A registry on SQLite with a few units; schemathesis (4.x CLI) runs docs/enrollment-api.yaml with a device token
and docs/registry-api.yaml with an admin token (then a viewer token), check `not_a_server_error` only (the
answers' exact conformance is reghttp's own suite), a fixed seed and a time budget per run
(REGISTRY_FUZZ_SECONDS, 30). After each run the registry must still be up (/healthz 200, same process) and its
log must hold no identifier digits the fuzzer's seed data put in.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)

T = blackbox.Checks("registry schemathesis")
SECONDS = int(os.environ.get("REGISTRY_FUZZ_SECONDS", "30"))


def skip(reason):
    blackbox.skip(T.name, reason)


def schemathesis():
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe:
        return [exe]
    try:
        import schemathesis  # noqa: F401
        return [sys.executable, "-m", "schemathesis.cli"]
    except ImportError:
        return None


def main():
    h.require_registry(skip)
    st = schemathesis()
    if not st:
        skip("schemathesis is not installed (python3 -m pip install schemathesis)")
    specs = {name: os.path.join(h.REPO, "docs", name) for name in ("enrollment-api.yaml", "registry-api.yaml")}
    missing = [n for n, p in specs.items() if not os.path.exists(p)]
    T.check(not missing, f"both OpenAPI files exist ({missing or 'yes'})")
    work = tempfile.mkdtemp(prefix="cellprov-regfuzz-")
    reg = None
    try:
        reg = h.Registry(f"sqlite://{work}/registry.db", work).start()
        admin = reg.operator_add("fuzz-admin", "admin")
        viewer = reg.operator_add("fuzz-viewer", "viewer")
        dev = reg.device_add("GW-000123")   # the serial of the spec's examples
        ids = [(h.make_imei(), h.make_imsi(), h.make_iccid()) for _ in range(3)]
        for i, (imei, imsi, iccid) in enumerate(ids):
            reg.post_event(dev, h.event("GW-000123", f"slot-{i}", "enrolled", 1, imei, imsi, iccid))
        runs = [("enrollment-api.yaml", dev), ("registry-api.yaml", admin), ("registry-api.yaml", viewer)]
        for name, token in runs:
            if name in missing:
                continue
            cmd = st + ["run", specs[name], "--url", reg.base, "--checks", "not_a_server_error",
                        "-H", f"Authorization: Bearer {token}", "--seed", "20261130", "--max-time", str(SECONDS),
                        "--max-examples", "40", "--request-timeout", "10", "--workers", "1",
                        "--generation-database", "none", "--no-color"]
            try:
                # cwd: the work dir, where schemathesis leaves its .schemathesis cache (never in the source tree)
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=SECONDS * 3 + 60, cwd=work)
                code, text = out.returncode, out.stdout + out.stderr
            except subprocess.TimeoutExpired as e:
                code, text = "timeout", str(e.stdout or "")
            role = "device" if token == dev else ("admin" if token == admin else "viewer")
            summary = [l.strip() for l in text.splitlines() if "generated" in l or " in " in l and "===" in l][-2:]
            # What counts: a 5xx (ST101 "Server error") or a dropped connection ("Network Error"), and that the run
            # really tested something. An internal error of the tool itself (exit 1 with only "Runtime Error"
            # lines, e.g. CPython 3.11's ast in hypothesis) is printed, not counted against the registry.
            server_errors = [l.strip() for l in text.splitlines() if "Server error" in l or "Network Error" in l
                             or "Connection" in l and "refused" in l]
            T.check(not server_errors, f"schemathesis on {name} ({role} token): no 5xx, no crash {summary}")
            T.check(" generated" in text and code in (0, 1),
                    f"schemathesis on {name} ({role} token) ran its test cases (exit {code})")
            if code != 0:
                print("\n".join("     | " + l for l in text.splitlines() if l.strip())[-4000:])
            T.check(reg.proc.poll() is None, f"the registry is still running after fuzzing {name} ({role})")
            r = reg.request("GET", "/healthz")
            T.check(r.status == 200, f"/healthz answers 200 after fuzzing {name} ({r.status})")
        T.check(reg.stop() == 0, "exits 0 on SIGTERM after the fuzz runs")
        T.check(not h.leaks_in(reg.log_text(), h.secrets_of(*[v for t in ids for v in t])),
                "no identifier digits in the registry's log")
        T.check(not h.leaks_in(reg.log_text(), [admin, viewer, dev]), "no token in the registry's log")
    except Exception as e:
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        h.clean_up(T, reg, work, tail=2000)
    T.finish()


if __name__ == "__main__":
    main()

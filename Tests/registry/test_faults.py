#!/usr/bin/env python3
# registry-suite: faults
"""The registry under attack and faults (issue 19), black box, against the built registry:

1. Connections (SQLite): the registry under `prlimit --nofile=1024`; 1 100 connections that never send a byte
   and 300 that trickle a header a byte at a time. A device's POST and /healthz still answer while they are
   open, and the server closes every one of them once its idle deadline (10 s) has passed.
2. The database not answering (PostgreSQL, a server of this test's own): its processes stopped (SIGSTOP: it
   accepts nothing and answers nothing), then shut down. /readyz answers 503 within 3 s, a device's POST gets 503
   with Retry-After within 8 s (never a hang), both recover without a restart, and SIGTERM while the database is
   gone stops the registry within 5 s.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)

T = blackbox.Checks("registry faults")


def skip(reason):
    blackbox.skip("registry faults", reason)


def timed(fn):
    start = time.monotonic()
    try:
        result = fn()
    except Exception as e:  # a timeout or a reset: reported by the caller's check
        result = e
    return result, time.monotonic() - start


def open_idle(port, count):
    """`count` connections that send nothing (non-blocking connects: past the server's cap they wait in the
    listen backlog, as an attacker's would)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_server(s):
    """True when the server has closed `s` (EOF or reset); False while it is open (nothing to read yet)."""
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def connections(workdir):
    reg = h.Registry(f"sqlite://{workdir}/conn.db", workdir, name="conn",
                     prefix=["prlimit", "--nofile=1024:1024"]).start()
    try:
        token = reg.device_add("GW-F1")
        imei, imsi, iccid = h.make_imei(), h.make_imsi(), h.make_iccid()
        log_before = reg.log_text()
        T.check("max_connections lowered to 960" in log_before,
                "under LimitNOFILE 1024 the cap is lowered to fit (960) and says so")

        idle = open_idle(reg.port, 1100)
        loris = open_idle(reg.port, 300)
        time.sleep(1.0)
        # The slow ones start a request and send one more header byte every 2 s.
        def trickle(first):
            for s in loris:
                try:
                    s.send(b"POST /v1/enrollments HTTP/1.1\r\nHost: x\r\n" if first else b"X")
                except OSError:
                    pass
        trickle(True)

        r, took = timed(lambda: reg.post_event(token, h.event("GW-F1", "/dev/ttyS1", "enrolled", 1, imei, imsi, iccid)))
        T.check(getattr(r, "status", None) == 201,
                f"a device's POST with 1 400 hostile connections open: 201 in {took:.1f} s ({r})")
        T.check(took < 25, f"... within 25 s, the idle deadline and a backlog's turn ({took:.1f} s)")
        r, took = timed(lambda: reg.request("GET", "/healthz", timeout=30))
        T.check(getattr(r, "status", None) == 200, f"/healthz with them open: 200 in {took:.1f} s ({r})")

        # Closed by the server: seen from the client for the silent ones; for the trickling ones the server's own
        # sockets are counted (a burst of 1 400 connects overflows the listen queue, and the kernel drops some
        # handshakes the client still believes open: those never cost the registry anything).
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            trickle(False)
            still_idle = sum(1 for s in idle if not closed_by_server(s))
            held = server_connections(reg.port)
            if still_idle == 0 and held == 0:
                break
            time.sleep(2)
        T.check(still_idle == 0, f"every idle connection closed by the server within 45 s ({still_idle} of 1100 open)")
        T.check(held == 0, f"the registry holds no connection 45 s after they opened, the trickling ones "
                           f"included ({held} open)")
        for s in idle + loris:
            s.close()
        r = reg.request("GET", "/healthz", timeout=10)
        T.check(r.status == 200, f"/healthz afterwards: 200 ({r.status})")
        T.check(reg.proc.poll() is None, "the registry still runs")
    finally:
        T.check(reg.stop() == 0, "SIGTERM: exit 0")


def server_connections(port):
    """The server's established TCP connections on `port` (its side: source port = the listener's)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10)
    return len([line for line in out.stdout.splitlines() if line.strip()])


def postgres_pids(datadir):
    with open(os.path.join(datadir, "postmaster.pid")) as f:
        master = int(f.readline())
    kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master] + [int(k) for k in kids]


def database_faults(workdir):
    pg = h.PostgresServer()
    pg.url = None  # a server of this test's own: it is stopped and started here
    pg.start()
    try:
        url = pg.new_database()
        reg = h.Registry(url, workdir, name="pgfaults").start()
        token = reg.device_add("GW-F2")
        imei, imsi, iccid = h.make_imei(), h.make_imsi(), h.make_iccid()
        seq = [0]

        def post():
            seq[0] += 1
            return reg.post_event(token, h.event("GW-F2", "/dev/ttyS1", "enrolled" if seq[0] == 1 else "sim_inserted",
                                                 seq[0], imei, imsi, iccid))

        r = post()
        T.check(r.status == 201, f"PostgreSQL up: POST 201 ({r.status})")
        T.check(reg.request("GET", "/readyz").status == 200, "PostgreSQL up: /readyz 200")

        # 1. Frozen: the server accepts nothing and answers nothing.
        pids = postgres_pids(os.path.join(pg.dir, "data"))
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        try:
            r, took = timed(lambda: reg.request("GET", "/readyz", timeout=20))
            T.check(getattr(r, "status", None) == 503 and took < 3,
                    f"database frozen: /readyz 503 within 3 s ({r}, {took:.1f} s)")
            r, took = timed(post)
            T.check(getattr(r, "status", None) == 503 and took < 8,
                    f"database frozen: a device's POST 503 within 8 s ({r}, {took:.1f} s)")
            T.check(getattr(r, "headers", {}).get("retry-after") is not None,
                    "... with Retry-After (cellprovd keeps the event and retries)")
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        ok = h.wait_until(lambda: reg.request("GET", "/readyz", timeout=10).status == 200, 20, 0.5)
        T.check(ok, "thawed: /readyz 200 again without a restart")
        r = post()
        T.check(r.status == 201, f"thawed: POST 201 ({r.status})")

        # 2. Shut down, then started again.
        subprocess.run([h.PG_SCRIPT, "stop", pg.dir], capture_output=True, timeout=60)
        r, took = timed(lambda: reg.request("GET", "/readyz", timeout=20))
        T.check(getattr(r, "status", None) == 503 and took < 3,
                f"database down: /readyz 503 within 3 s ({r}, {took:.1f} s)")
        r, took = timed(post)
        T.check(getattr(r, "status", None) == 503 and took < 8,
                f"database down: a device's POST 503 within 8 s ({r}, {took:.1f} s)")
        subprocess.run([h.PG_SCRIPT, "start", pg.dir], capture_output=True, timeout=120)
        ok = h.wait_until(lambda: reg.request("GET", "/readyz", timeout=10).status == 200, 30, 0.5)
        T.check(ok, "restarted: /readyz 200 again without restarting the registry")
        r = post()
        T.check(r.status == 201, f"restarted: POST 201 ({r.status})")

        # 3. SIGTERM while the database is gone (with a request waiting on it): exits within 5 s.
        subprocess.run([h.PG_SCRIPT, "stop", pg.dir], capture_output=True, timeout=60)
        reg.request("GET", "/readyz", timeout=10)
        start = time.monotonic()
        reg.proc.send_signal(signal.SIGTERM)
        try:
            code = reg.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = "still running"
        took = time.monotonic() - start
        T.check(took < 5, f"SIGTERM with the database gone: exits within 5 s ({took:.1f} s, status {code})")
        reg.kill()
        reg.log.close()
    finally:
        pg.stop()


def main():
    h.require_binaries(h.REGISTRY)
    for tool, package in (("prlimit", "util-linux"), ("ss", "iproute2")):
        if not shutil_which(tool):
            skip(f"{tool} ({package}) not installed")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        skip(f"this test needs 4096 open files for its own sockets (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    workdir = tempfile.mkdtemp(prefix="cellprov-regfaults-")
    connections(workdir)
    if h.PostgresServer().available():
        database_faults(workdir)
    else:
        skip("PostgreSQL server binaries not installed")
    T.finish()


def shutil_which(name):
    import shutil
    return shutil.which(name)


if __name__ == "__main__":
    main()

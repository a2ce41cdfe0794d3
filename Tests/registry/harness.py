"""Shared pieces of the registry's black-box tests (Tests/registry) and benchmarks (bench/registry_ingest.py).

Everything here drives real processes through the outward contract of issue 9 / docs/registry.md:
`cellprov-registry serve|device add|station add|operator add`, the HTTP API on loopback, a real PostgreSQL from
scripts/pg-test-server.sh, `cellprov simulate` PTYs and `cellprovd`. No mocks. Only the standard library, so that
the tests run on a fresh Debian 12 with python3 alone.
"""
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402  (Tests/pylib: the helpers every black-box suite shares)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CELLPROV_BIN", os.path.join(REPO, ".build", "debug"))
REGISTRY = os.environ.get("CELLPROV_REGISTRY", os.path.join(BIN, "cellprov-registry"))
CELLPROV = os.environ.get("CELLPROV", os.path.join(BIN, "cellprov"))
CELLPROVD = os.environ.get("CELLPROVD", os.path.join(BIN, "cellprovd"))
PG_SCRIPT = os.path.join(REPO, "scripts", "pg-test-server.sh")


# ---------------------------------------------------------------------------------------------------------------
# Identifiers: valid ones (Luhn where the type has a check digit), unique per test run.

_counter = [secrets.randbelow(900000)]


def _next():
    _counter[0] += 1
    return _counter[0]


def make_imei(tac="35693803"):
    return blackbox.luhn_complete(tac + f"{_next() % 1000000:06d}")


def make_imsi(mccmnc="26201"):
    return mccmnc + f"{_next():010d}"[-10:]


def make_iccid(issuer="894920"):
    return blackbox.luhn_complete(issuer + f"{_next():012d}"[-12:])


def make_eid(country="049", issuer="032"):
    """A valid eUICC EID (GSMA SGP.29): 32 digits, "89", country, issuer, 5 version digits, 17 individual digits,
    and the two check digits that make the whole number equal 1 mod 97."""
    body = "89" + country + issuer + "00000" + f"{_next():017d}"[-17:]
    check = 98 - int(body + "00") % 97
    eid = body + f"{check:02d}"
    assert len(eid) == 32 and int(eid) % 97 == 1
    return eid


def secrets_of(*values):
    """The digit strings that must never appear in a log: each identifier, the IMEI's serial part, the MSIN."""
    out = set()
    for v in values:
        if not v:
            continue
        out.add(v)
        if len(v) == 15 and v.isdigit():
            out.add(v[8:14])       # IMEI serial number (or an IMSI's MSIN tail: also private)
            out.add(v[5:])         # MSIN of an IMSI with a 2-digit MNC
        if len(v) == 32 and v.isdigit():
            out.add(v[8:])         # an EID past its public prefix (version, card number, check digits)
            out.add(v[13:30])      # the card's individual number
    return sorted(out)


def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(serial, slot, etype, seq, imei=None, imsi=None, iccid=None, previous=None, severity=None,
          event_id=None, eid=None, sim_slot=None, **extra):
    """An EnrollmentEvent exactly as docs/enrollment-api.yaml describes it (what cellprovd sends)."""
    identity = {k: v for k, v in (("imei", imei), ("imsi", imsi), ("iccid", iccid), ("eid", eid),
                                  ("sim_slot", sim_slot)) if v}
    body = {
        "event_id": event_id or str(uuid.uuid4()),
        "type": etype,
        "occurred_at": now_rfc3339(),
        "sequence": seq,
        "severity": severity or {"enrolled": "info", "manufactured": "info", "sim_inserted": "info",
                                 "profile_switched": "info", "sim_slot_switched": "notice",
                                 "profile_clone_suspected": "critical",
                                 "duplicate_imei": "critical"}.get(etype, "warning"),
        "device": {"serial": serial},
        "module": {"slot": slot, "source": "at", "manufacturer": "Quectel", "model": "EG25"},
        "identity": identity,
        "previous": previous,
        "problems": [],
    }
    body.update(extra)
    return body


# ---------------------------------------------------------------------------------------------------------------
# Processes

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() >= deadline:
            return value
        time.sleep(interval)


def psql(url, sql, database=None, timeout=60):
    """One psql call against `url` (or its `database`): the output, trimmed; a RuntimeError with psql's message when
    it fails. Run as the postgres user when we are root (the test server's socket authenticates by peer)."""
    if database is not None:
        url = PostgresServer.with_database(url, database)
    cmd = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, url]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def postmaster_pid(url):
    """The pid of the postmaster serving `url`, from its data directory's postmaster.pid (a server on this host)."""
    with open(os.path.join(psql(url, "SHOW data_directory"), "postmaster.pid")) as f:
        return int(f.readline())


class PostgresServer:
    """CELLPROV_TEST_POSTGRES_URL when make test started one (scripts/with-postgres.sh), else a server of our own.
    Each test gets a fresh database of its own (`CREATE DATABASE t_<random>`)."""

    def __init__(self):
        self.dir = None
        self.url = os.environ.get("CELLPROV_TEST_POSTGRES_URL")

    def available(self):
        return self.url is not None or os.path.exists(PG_SCRIPT) and bool(
            [d for d in os.listdir("/usr/lib/postgresql") if os.path.exists(f"/usr/lib/postgresql/{d}/bin/initdb")]
            if os.path.isdir("/usr/lib/postgresql") else [])

    def start(self):
        if self.url:
            return self.url
        self.dir = tempfile.mkdtemp(prefix="cellprov-regpg-")
        os.chmod(self.dir, 0o755)
        out = subprocess.run([PG_SCRIPT, "start", self.dir], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"pg-test-server.sh failed: {out.stderr.strip()}")
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self):
        if self.dir:
            subprocess.run([PG_SCRIPT, "stop", self.dir], capture_output=True, timeout=60)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @staticmethod
    def with_database(url, name):
        p = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))

    def psql(self, sql, database=None):
        return psql(self.url, sql, database)

    def new_database(self):
        name = "t_" + secrets.token_hex(6)
        self.psql(f"CREATE DATABASE {name}")
        return self.with_database(self.url, name)


class Registry:
    """One `cellprov-registry serve` on a loopback port, its stderr in a file (scanned for leaks)."""

    def __init__(self, database, workdir, name="registry", extra=(), prefix=()):
        self.database = database
        self.workdir = workdir
        self.name = name
        self.extra = list(extra)
        self.prefix = list(prefix)  # e.g. ["prlimit", "--nofile=1024:1024"]
        self.port = None
        self.proc = None
        self.log_path = os.path.join(workdir, f"{name}.stderr")

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=60):
        self.port = free_port()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.prefix + [REGISTRY, "serve", "--listen", f"127.0.0.1:{self.port}", "--database", self.database] + self.extra,
            stdout=self.log, stderr=self.log, start_new_session=True)
        ready = wait_until(lambda: self.proc.poll() is not None or
                           f"listening on 127.0.0.1:{self.port}" in self.log_text(), timeout)
        if self.proc.poll() is not None or not ready:
            raise RuntimeError(f"{self.name} did not log 'listening on 127.0.0.1:{self.port}' "
                               f"(exit {self.proc.poll()}):\n{self.log_text()[-3000:]}")
        return self

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        """SIGTERM; returns the exit status (the contract: 0)."""
        if not self.proc:
            return None
        status = blackbox.stop_process(self.proc, 20)
        self.log.close()
        return "killed after 20 s" if status is None else status

    def kill(self):
        if self.proc:
            blackbox.kill_process(self.proc)

    # -- the admin commands (work while a server runs on the same database) --
    def _cli(self, *args):
        out = subprocess.run([REGISTRY] + list(args) + ["--database", self.database], capture_output=True,
                             text=True, timeout=60)
        with open(self.log_path, "a") as f:   # their stderr is a log too: scanned like the server's
            f.write(out.stderr)
        if out.returncode != 0:
            raise RuntimeError(f"cellprov-registry {args[0]} {args[1]} failed ({out.returncode}): {out.stderr}")
        lines = out.stdout.splitlines()
        if len(lines) != 1 or not lines[0].strip():
            raise RuntimeError(f"cellprov-registry {args[0]} {args[1]}: expected one line (the token) on stdout, "
                               f"got {len(lines)}")
        return lines[0].strip()

    def device_add(self, serial):
        return self._cli("device", "add", serial)

    def station_add(self, name):
        return self._cli("station", "add", name)

    def operator_add(self, name, role):
        return self._cli("operator", "add", name, "--role", role)

    # -- HTTP --
    def request(self, method, path, token=None, body=None, headers=None, raw=None, timeout=30):
        h = {"Connection": "close"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            payload = resp.read()
            return Response(resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), payload,
                            resp.getheader_list("Set-Cookie") if hasattr(resp, "getheader_list")
                            else [v for k, v in resp.getheaders() if k.lower() == "set-cookie"])
        finally:
            conn.close()

    def post_event(self, token, ev):
        return self.request("POST", "/v1/enrollments", token=token, body=ev,
                            headers={"Idempotency-Key": ev["event_id"], "User-Agent": "cellprovd/0.1.0"})

    def units(self, token, q, reveal=False):
        path = "/v1/units?q=" + urllib.parse.quote(q) + ("&reveal=true" if reveal else "")
        return self.request("GET", path, token=token)

    def unit(self, token, serial, reveal=False):
        return self.request("GET", "/v1/units/" + urllib.parse.quote(serial, safe="") +
                            ("?reveal=true" if reveal else ""), token=token)

    def flags(self, token):
        r = self.request("GET", "/v1/flags", token=token)
        if r.status != 200:
            raise RuntimeError(f"GET /v1/flags answered {r.status}: {r.text[:300]}")
        return r.json()["flags"]


class Response:
    def __init__(self, status, headers, body, cookies):
        self.status = status
        self.headers = headers
        self.body = body
        self.cookies = cookies

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"HTTP {self.status} {self.text[:200]!r}"


def values_of_key(obj, key):
    """Every value stored under `key` anywhere in a JSON document (the unit's JSON shape beyond the contract's
    `serial`/`kind` is reghttp's to choose: the tests look for event types wherever the timeline puts them)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                found.append(v)
            found.extend(values_of_key(v, key))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(values_of_key(v, key))
    return found


def timeline_types(reg, token, serial):
    r = reg.unit(token, serial)
    if r.status != 200:
        return []
    return [t for t in values_of_key(r.json(), "type") if isinstance(t, str)]


def flags_of(reg, token, kind, serial=None):
    return [f for f in reg.flags(token) if f.get("kind") == kind and (serial is None or f.get("serial") == serial)]


def leaks_in(text, values):
    return [v for v in values if v and v in text]


# ---------------------------------------------------------------------------------------------------------------
# Simulated modems and cellprovd (as scripts/demo.sh and Tests/journald run them: static PTY ports, no udev)

class Simulator:
    def __init__(self, workdir, name, profile="quectel", imei=None, imsi=None, iccid=None):
        self.link = os.path.join(workdir, name)
        self.identity_file = os.path.join(workdir, name + ".json")
        self.write_identity(imei, imsi, iccid)
        self.err = open(os.path.join(workdir, name + ".sim.err"), "wb")
        self.proc = subprocess.Popen([CELLPROV, "simulate", "--profile", profile, "--link", self.link,
                                      "--identity-file", self.identity_file],
                                     stdout=subprocess.DEVNULL, stderr=self.err, start_new_session=True)
        if not wait_until(lambda: os.path.exists(self.link), 10, 0.02):
            raise RuntimeError(f"simulator {name} did not start")

    def write_identity(self, imei, imsi, iccid):
        """The identity file; `revision` only once update_firmware set one (else the profile's default)."""
        revision = getattr(self, "revision", None)
        with open(self.identity_file, "w") as f:
            json.dump({k: v for k, v in (("imei", imei), ("imsi", imsi), ("iccid", iccid), ("revision", revision))
                       if v}, f)
        self.identity = (imei, imsi, iccid)

    def update_firmware(self, revision):
        """The same module now answers AT+CGMR with `revision` (no URC: the daemon sees it at its next read)."""
        self.revision = revision
        self.write_identity(*self.identity)
        self.proc.send_signal(signal.SIGUSR1)

    def swap(self, imei, imsi, iccid):
        """New identity, announced with the profile's SIM URCs (what a SIM swap or module swap looks like)."""
        self.write_identity(imei, imsi, iccid)
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        blackbox.stop_process(self.proc, 5)
        self.err.close()


class Daemon:
    """cellprovd on static PTY ports, reporting to the registry with a device token (token_file, mode 0600)."""

    def __init__(self, workdir, name, serial, ports, backend_url, token):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.token_file = os.path.join(self.dir, "token")
        self.set_token(token)
        self.config = blackbox.write_cellprovd_config(
            os.path.join(self.dir, "cellprovd.toml"), f"{self.dir}/state", serial, ports=ports,
            backend=backend_url, token_file=self.token_file, discovery=[("reprobe_interval_seconds", 600)])
        self.log_path = os.path.join(self.dir, "cellprovd.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CELLPROVD, "--config", self.config], stdout=self.log, stderr=self.log,
                                     start_new_session=True)

    def set_token(self, token):
        fd = os.open(self.token_file + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(self.token_file + ".new", self.token_file)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def log_text(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def stop(self):
        blackbox.stop_process(self.proc, 10)
        self.log.close()


def clean_up(T, reg, work, tail=3000):
    """A suite's `finally`: the registry killed if still running, the tail of its log printed when a check of T
    failed, the work directory removed."""
    if reg:
        reg.kill()
        if T.failed:
            print("--- registry log (tail) ---\n" + reg.log_text()[-tail:])
    shutil.rmtree(work, ignore_errors=True)


def require_binaries(*paths):
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    return missing


def require_registry(skip, *others):
    """Calls skip(reason) when cellprov-registry (or one of `others`, e.g. CELLPROVD) is not built, or is still
    main's placeholder."""
    missing = require_binaries(REGISTRY, *others)
    if missing:
        skip(f"not built: {missing}")
    if not registry_implemented():
        skip("cellprov-registry serve is not implemented in this build")


def registry_implemented():
    """False while cellprov-registry is still main's placeholder (it then answers `serve --help` with an error)."""
    if not os.access(REGISTRY, os.X_OK):
        return False
    out = subprocess.run([REGISTRY, "serve", "--help"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and "--listen" in out.stdout + out.stderr

#!/usr/bin/env python3
# registry-suite: pg-connect
"""cellprov-registry connecting to a real PostgreSQL the libpq way (docs/registry.md, "PostgreSQL"), given only a URL.

A private cluster of its own (Debian's server binaries, initdb, a unix socket in the work directory and a loopback
port) with this pg_hba.conf:

    local      all  all                   peer            the service user, by its operating-system name
    hostssl    all  reg_tls  127.0.0.1/32 scram-sha-256   TLS only (server certificate from a test CA, SAN localhost)
    hostnossl  all  reg_pw   127.0.0.1/32 scram-sha-256   plain only (so sslmode=prefer must fall back)

Checks, each with `cellprov-registry serve --database URL` and nothing else:
  - peer: run as a system user made for the test (useradd --system; setpriv), role of the same name, URL
    `postgres:///DB?host=SOCKETDIR`: /readyz 200. The same user asking for role `postgres` is refused with the
    server's "Peer authentication failed" and the role named.
  - scram-sha-256 with the password from ~/.pgpass (mode 0600, a password with ':' escaped as `\\:`), sslmode left to
    its default (prefer: the server refuses TLS for this role, the registry falls back to plain): /readyz 200.
    The same file at mode 0644 is ignored: the registry exits 1 naming the file, its mode and `chmod 0600`.
  - TLS: sslmode=verify-full with sslrootcert = the test CA and host localhost, the password from PGPASSWORD:
    /readyz 200, and the server's pg_stat_ssl shows the registry's connections encrypted. verify-full to
    127.0.0.1 (not a name the certificate carries), and to a wrong name through hostaddr, are refused; a CA that
    did not sign the server certificate is refused.
  - No password appears in any of the registry's output.

Run as root (the cluster then belongs to `postgres`, and the peer check runs as a system user it creates and
removes); as another user the peer check runs as that user.

    python3 Tests/registry/test_pg_connect.py
Exit status: 0 passed (or skipped, SKIP: reason; a failure under CELLPROV_TEST_NO_SKIP=1), 1 failed.
"""
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)

T = blackbox.Checks("registry postgres connections")
SERVICE_USER = "cellprov-pgtest"


def skip(reason):
    blackbox.skip(T.name, reason)


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120, **kw)


class Cluster:
    """initdb + pg_ctl in DIR, owned by `postgres` when we are root."""

    def __init__(self, work, bindir):
        self.work = work
        self.bindir = bindir
        self.data = os.path.join(work, "data")
        self.socket = os.path.join(work, "socket")
        self.port = H.free_port()
        self.root = os.geteuid() == 0
        self.owner = "postgres" if self.root else pwd.getpwuid(os.geteuid()).pw_name
        self.as_owner = ["runuser", "-u", "postgres", "--"] if self.root else []

    def start(self, hba, ssl_files):
        os.makedirs(self.socket)
        if self.root:
            run(["chown", "-R", "postgres:", self.work])
        run(self.as_owner + [f"{self.bindir}/initdb", "-D", self.data, "-U", self.owner, "--auth-local=peer",
                             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"])
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(hba)
        cert, key = ssl_files
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.socket}'\n"
                    f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n"
                    "password_encryption = 'scram-sha-256'\nmax_connections = 100\n")
        if self.root:
            run(["chown", "-R", "postgres:", self.work])
        run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "-l", os.path.join(self.work, "server.log"),
                             "-w", "-t", "30", "start"])

    def psql(self, sql, database="postgres"):
        out = subprocess.run(self.as_owner + ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.socket,
                                              "-p", str(self.port), "-U", self.owner, "-d", database, "-c", sql],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self):
        subprocess.run(self.as_owner + [f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)


def make_ca(work, name):
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=cellprov test {name}"],
        cwd=work)


def make_server_cert(work, ca):
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=localhost"], cwd=work)
    with open(os.path.join(work, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")   # a name only: 127.0.0.1 is not in it
    run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "server.ext"], cwd=work)
    os.chmod(os.path.join(work, "server.key"), 0o600)


def sql_literal(text):
    return "'" + text.replace("'", "''") + "'"


def pgpass_escape(text):
    return text.replace("\\", "\\\\").replace(":", "\\:")


class Runner:
    """cellprov-registry as a given user with exactly the environment given (nothing inherited)."""

    def __init__(self, work, user):
        self.work = work
        self.user = user
        self.outputs = []

    def prefix(self, env):
        pairs = [f"{k}={v}" for k, v in sorted(env.items())]
        base = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + pairs
        if self.user is None:
            return base
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups"] + base

    def serves(self, name, url, env):
        """Starts `serve`; returns (readyz status or None, registry)."""
        reg = H.Registry(url, self.work, name=name, prefix=self.prefix(env), extra=["--log-level", "debug"])
        try:
            reg.start(timeout=60)
        except RuntimeError as e:
            self.outputs.append(reg.log_text())
            print(f"     {name} did not start:\n{str(e)[-1500:]}")
            return None, reg
        try:
            with urllib.request.urlopen(reg.base + "/readyz", timeout=10) as r:
                status = r.status
        except Exception as e:   # an HTTP error status is an answer too
            status = getattr(e, "code", None)
        return status, reg

    def stop(self, reg):
        reg.stop()
        self.outputs.append(reg.log_text())

    def refuses(self, name, url, env):
        """`serve` that must exit non-zero without listening: (exit status, output)."""
        argv = self.prefix(env) + [H.REGISTRY, "serve", "--listen", f"127.0.0.1:{H.free_port()}", "--database", url]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=90)
        text = out.stdout + out.stderr
        self.outputs.append(text)
        return out.returncode, text


def main():
    missing = H.require_binaries(H.REGISTRY)
    if missing or not H.registry_implemented():
        skip(f"cellprov-registry not built: {missing}")
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bindir = next((d for d in reversed(bindirs) if os.access(f"{d}/initdb", os.X_OK)), None)
    if bindir is None or shutil.which("psql") is None:
        skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    if shutil.which("openssl") is None:
        skip("openssl missing")
    root = os.geteuid() == 0
    if root and (shutil.which("useradd") is None or shutil.which("setpriv") is None):
        skip("useradd or setpriv missing")

    work = tempfile.mkdtemp(prefix="cellprov-pgconnect-")
    os.chmod(work, 0o755)
    made_user = False
    cluster = None
    try:
        # The service user (root: a system user made now; otherwise whoever runs the test).
        if root:
            try:
                pwd.getpwnam(SERVICE_USER)
            except KeyError:
                run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                     "/usr/sbin/nologin", SERVICE_USER])
                made_user = True
            service = SERVICE_USER
        else:
            service = pwd.getpwuid(os.geteuid()).pw_name
        runner = Runner(work, service if root else None)
        home = os.path.join(work, "home")
        os.makedirs(home)
        if root:
            run(["chown", f"{service}:", home])

        tls_dir = os.path.join(work, "tls")
        os.makedirs(tls_dir)
        make_ca(tls_dir, "ca")
        make_ca(tls_dir, "otherca")
        make_server_cert(tls_dir, "ca")
        os.chmod(tls_dir, 0o755)
        for f in ("ca.pem", "otherca.pem"):
            os.chmod(os.path.join(tls_dir, f), 0o644)

        cluster = Cluster(os.path.join(work, "pg"), bindir)
        os.makedirs(cluster.work)
        os.chmod(cluster.work, 0o755)
        # The server's key where only the server reads it.
        cert = os.path.join(cluster.work, "server.pem")
        key = os.path.join(cluster.work, "server.key")
        shutil.copy(os.path.join(tls_dir, "server.pem"), cert)
        shutil.copy(os.path.join(tls_dir, "server.key"), key)
        os.chmod(key, 0o600)
        hba = ("local all all peer\n"
               "hostssl all reg_tls 127.0.0.1/32 scram-sha-256\n"
               "hostnossl all reg_pw 127.0.0.1/32 scram-sha-256\n")
        cluster.start(hba, (cert, key))

        pw_plain = "pw:" + secrets.token_hex(8) + "\\x"   # ':' and '\' escaped in the password file
        pw_tls = "tls-" + secrets.token_hex(8)
        passwords = [pw_plain, pw_tls]
        if root:
            cluster.psql(f'CREATE ROLE "{service}" LOGIN')
            cluster.psql(f'CREATE DATABASE reg_peer OWNER "{service}"')
        else:
            cluster.psql("CREATE DATABASE reg_peer")
        cluster.psql(f"CREATE ROLE reg_pw LOGIN PASSWORD {sql_literal(pw_plain)}")
        cluster.psql("CREATE DATABASE reg_pw OWNER reg_pw")
        cluster.psql(f"CREATE ROLE reg_tls LOGIN PASSWORD {sql_literal(pw_tls)}")
        cluster.psql("CREATE DATABASE reg_tls OWNER reg_tls")

        # 1. Peer authentication, the URL alone.
        url = f"postgres:///reg_peer?host={cluster.socket}&port={cluster.port}"
        status, reg = runner.serves("peer", url, {"HOME": home})
        T.check(status == 200, f"peer: serve --database {url} as {service}: /readyz {status}")
        T.check(f'role "{service}" (the operating-system user)' in reg.log_text(),
                "peer: the log names the role and that it is the operating-system user")
        runner.stop(reg)
        tables = cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", database="reg_peer")
        T.check(int(tables or 0) > 0, f"peer: the schema was created in reg_peer ({tables} tables)")
        if root:
            code, text = runner.refuses("peer-wrong-role", f"postgres://postgres@/reg_peer?host={cluster.socket}"
                                        f"&port={cluster.port}", {"HOME": home})
            T.check(code != 0 and "Peer authentication failed" in text and 'role "postgres" (from the URL)' in text,
                    f"peer: role postgres as {service} is refused, naming the role (exit {code}): "
                    f"{text.strip().splitlines()[-1][:400] if text.strip() else ''}")

        # 2. scram-sha-256, password from ~/.pgpass (0600); sslmode default prefer falls back to plain (hostnossl).
        pgpass = os.path.join(home, ".pgpass")
        with open(pgpass, "w") as f:
            f.write("# cellprov test\n")
            f.write(f"127.0.0.1:{cluster.port}:reg_pw:reg_pw:{pgpass_escape(pw_plain)}\n")
        if root:
            run(["chown", f"{service}:", pgpass])
        os.chmod(pgpass, 0o600)
        url = f"postgres://reg_pw@127.0.0.1:{cluster.port}/reg_pw"
        status, reg = runner.serves("pgpass", url, {"HOME": home})
        T.check(status == 200, f"scram: password from ~/.pgpass (0600), sslmode prefer falling back: /readyz {status}")
        log = reg.log_text()
        T.check(f"password from the password file {pgpass}, line 2" in log,
                "scram: the log says the password came from the password file, line 2")
        T.check("connected without TLS" in log, "scram: prefer fell back to plain (the role is hostnossl)")
        runner.stop(reg)

        os.chmod(pgpass, 0o644)
        code, text = runner.refuses("pgpass-0644", url, {"HOME": home})
        T.check(code != 0 and "mode 0644" in text and f"chmod 0600 {pgpass}" in text
                and "the server asks for a password and there is none" in text,
                f"scram: a 0644 password file is ignored with a clear error (exit {code}): "
                f"{text.strip().splitlines()[-1][:500] if text.strip() else ''}")
        os.chmod(pgpass, 0o600)

        # 3. TLS: verify-full with the test CA; PGPASSWORD.
        ca = os.path.join(tls_dir, "ca.pem")
        url = f"postgres://reg_tls@localhost:{cluster.port}/reg_tls?sslmode=verify-full&sslrootcert={ca}"
        status, reg = runner.serves("tls", url, {"HOME": home, "PGPASSWORD": pw_tls})
        T.check(status == 200, f"tls: verify-full with the test CA: /readyz {status}")
        encrypted = cluster.psql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                                 "WHERE ssl AND usename = 'reg_tls'") if status == 200 else "0"
        T.check(int(encrypted or 0) >= 1, f"tls: the server sees {encrypted} encrypted connection(s) of reg_tls")
        runner.stop(reg)

        for name, bad_url, expect in [
            ("tls-ip", f"postgres://reg_tls@127.0.0.1:{cluster.port}/reg_tls?sslmode=verify-full&sslrootcert={ca}",
             "certificate is not for 127.0.0.1"),
            ("tls-wrong-name", f"postgres://reg_tls@wrong.example:{cluster.port}/reg_tls?hostaddr=127.0.0.1"
             f"&sslmode=verify-full&sslrootcert={ca}", "certificate is not for wrong.example"),
            ("tls-other-ca", f"postgres://reg_tls@localhost:{cluster.port}/reg_tls?sslmode=verify-full"
             f"&sslrootcert={os.path.join(tls_dir, 'otherca.pem')}", "does not chain to"),
        ]:
            code, text = runner.refuses(name, bad_url, {"HOME": home, "PGPASSWORD": pw_tls})
            T.check(code != 0 and expect in text,
                    f"{name}: refused with '{expect}' (exit {code}): "
                    f"{text.strip().splitlines()[-1][:500] if text.strip() else ''}")

        # verify-ca checks the chain and not the name: 127.0.0.1 is fine there.
        url = f"postgres://reg_tls@127.0.0.1:{cluster.port}/reg_tls?sslmode=verify-ca&sslrootcert={ca}"
        status, reg = runner.serves("tls-verify-ca", url, {"HOME": home, "PGPASSWORD": pw_tls})
        T.check(status == 200, f"tls: verify-ca to 127.0.0.1 (chain, not name): /readyz {status}")
        runner.stop(reg)

        # 4. No password in any output.
        everything = "\n".join(runner.outputs)
        leaked = [p for p in passwords if p in everything or pgpass_escape(p) in everything]
        T.check(not leaked and everything, f"no password in {len(runner.outputs)} outputs of the registry")
    finally:
        if cluster is not None:
            cluster.stop()
        if made_user:
            subprocess.run(["userdel", SERVICE_USER], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    T.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# registry-suite: mtls {bin}
"""Mutual TLS of cellprov-registry's device API, end to end with real certificates (openssl) and a running
`cellprov-registry serve --tls-certificate --tls-key --tls-client-ca`.

A throw-away CA signs a server certificate and two device certificates (subject CN = the device serial); a third
certificate comes from another CA. Checks: a device with its certificate and no token is stored (201); its
certificate with a body for another serial is refused (403); a certificate from another CA cannot connect; no
certificate and no token is 401; a token still works without a certificate; a token and a certificate naming
different devices are refused (403). Then SIGTERM exits 0.

    python3 Tests/registry/test_mtls.py [BUILD_DIR]
"""

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*argv, cwd):
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def make_ca(work, name):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=work)


def make_cert(work, ca, name, cn, server=False):
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/O=cellprov test/CN={cn}", cwd=work)
    ext = os.path.join(work, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n")
    run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=work)


def event(serial):
    return {
        "event_id": str(uuid.uuid4()), "type": "enrolled", "sequence": 1, "severity": "info",
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": {"serial": serial},
        "module": {"slot": "usb-1-1.2", "source": "at"}, "identity": {"imei": "490154203237518"},
        "previous": None, "problems": [],
    }


def post(base, work, body, cert=None, token=None):
    context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))
    if cert:
        context.load_cert_chain(os.path.join(work, f"{cert}.pem"), os.path.join(work, f"{cert}.key"))
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + "/v1/enrollments", data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ssl.SSLError, ConnectionError) as error:
        return f"connection failed ({type(error).__name__})"


def main():
    if not shutil.which("openssl"):
        print("test_mtls: skipped (openssl missing)")
        return 77
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build", "debug"))
    exe = os.path.join(build, "cellprov-registry")
    work = tempfile.mkdtemp(prefix="cellprov-registry-mtls-")
    make_ca(work, "ca")
    make_ca(work, "rogue")
    make_cert(work, "ca", "server", "localhost", server=True)
    make_cert(work, "ca", "dev1", "GW-TLS-1")
    make_cert(work, "ca", "dev2", "GW-TLS-2")
    make_cert(work, "rogue", "evil", "GW-TLS-1")
    database = "sqlite://" + os.path.join(work, "registry.db")
    token2 = subprocess.run([exe, "device", "add", "GW-TLS-2", "--database", database], check=True,
                            capture_output=True, text=True).stdout.strip()
    admin = subprocess.run([exe, "operator", "add", "alice", "--role", "admin", "--database", database], check=True,
                           capture_output=True, text=True).stdout.strip()
    log_path = os.path.join(work, "registry.log")
    log = open(log_path, "w")
    server = subprocess.Popen(
        [exe, "serve", "--listen", "127.0.0.1:0", "--database", database,
         "--tls-certificate", os.path.join(work, "server.pem"), "--tls-key", os.path.join(work, "server.key"),
         "--tls-client-ca", os.path.join(work, "ca.pem")], stdout=log, stderr=subprocess.STDOUT)
    failures = []
    try:
        port = None
        for _ in range(200):
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log_path).read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if not port:
            failures.append("no 'listening on' line")
            return 1
        base = f"https://127.0.0.1:{port}"
        cases = [
            ("certificate, no token", post(base, work, event("GW-TLS-1"), cert="dev1"), 201),
            ("certificate, no serial in the body", post(base, work, {**event("GW-TLS-1"), "device": {}}, cert="dev1"), 201),
            ("certificate for another serial", post(base, work, event("GW-TLS-2"), cert="dev1"), 403),
            ("no certificate, no token", post(base, work, event("GW-TLS-1")), 401),
            ("token, no certificate", post(base, work, event("GW-TLS-2"), token=token2), 201),
            ("token and certificate of different devices", post(base, work, event("GW-TLS-2"), cert="dev1", token=token2), 403),
            ("token and certificate of the same device", post(base, work, event("GW-TLS-2"), cert="dev2", token=token2), 201),
        ]
        for name, got, want in cases:
            if got != want:
                failures.append(f"{name}: {got}, want {want}")
        # A unit marked lost that still holds a valid certificate: its events are stored and raise lost_unit_seen.
        context = ssl.create_default_context(cafile=os.path.join(work, "ca.pem"))

        def operator(method, path):
            request = urllib.request.Request(base + path, method=method, headers={"Authorization": f"Bearer {admin}"},
                                             data=b"" if method == "POST" else None)
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                return response.status, response.read().decode()

        if operator("POST", "/v1/units/GW-TLS-1/lost")[0] != 200:
            failures.append("mark lost failed")
        lost = post(base, work, event("GW-TLS-1"), cert="dev1")
        if lost != 201:
            failures.append(f"a lost unit's certificate-authenticated event: {lost}, want 201 (stored, flagged)")
        flags = json.loads(operator("GET", "/v1/flags")[1])["flags"]
        if not any(f["kind"] == "lost_unit_seen" and f.get("serial") == "GW-TLS-1" for f in flags):
            failures.append("no lost_unit_seen flag for the lost unit reporting with its certificate")
        rogue = post(base, work, event("GW-TLS-1"), cert="evil")
        if rogue in (201, 200):
            failures.append(f"a certificate from another CA was accepted ({rogue})")
    finally:
        code = blackbox.stop_process(server, 15)
        code = "killed" if code is None else code
        log.close()
        if code != 0:
            failures.append(f"SIGTERM: exit {code}")
    for f in failures:
        print(f"test_mtls: FAILED: {f}", file=sys.stderr)
    if failures:
        print(f"test_mtls: log in {log_path}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"test_mtls: ok ({len(cases) + 2} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

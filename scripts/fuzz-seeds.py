#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (scripts/fuzz.sh) from the project's own tables.

Usage: fuzz-seeds.py OUTDIR. Makes OUTDIR/<target>/ with one file per seed, in each target's input format (see the
comment at the top of Sources/cellprov-fuzz-<target>/main.swift):
  at        the modem bytes of every AT transcript (Tests/CellprovCoreTests/Fixtures/at-transcripts.jsonl), whole
            and byte by byte, with the transcript's pending command
  parsers   the transcripts' lines and the identity vectors' raw values (vectors.jsonl)
  identity  whole identity-read sessions: a healthy modem, then each identity transcript's answer in its place
  config    config/cellprovd.toml.example and small variants
  ports     udev/ports.tsv
  scrub     backend answers (status + body), some echoing identifiers
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "CellprovCoreTests", "Fixtures")

# Must match `commands` in Sources/cellprov-fuzz-at/main.swift.
AT_COMMANDS = [None, "AT+CGSN", "AT+CPIN?", "AT+CCID", "ATE0", "AT+CIMI", "AT+QCCID", "AT+CRSM=176,12258,0,0,10",
               "AT+CGMI"]
LINE_LIMIT_1024 = 5  # index of 1024 in `lineLimits`


def load(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(out, target, name, data):
    folder = os.path.join(out, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def session(answers):
    """The identity target's input: [length: 2 bytes][split: 1 byte][bytes] per answer."""
    out = b""
    for i, a in enumerate(answers):
        data = a.encode("latin-1") if isinstance(a, str) else a
        out += struct.pack(">HB", len(data), (len(data) // 2) if i % 3 == 2 else 0) + data
    return out


def main():
    out = sys.argv[1]
    transcripts = load("at-transcripts.jsonl")
    vectors = load("vectors.jsonl")

    for t in transcripts:
        command = t["command"] if t["command"] in AT_COMMANDS else None
        selector = AT_COMMANDS.index(command)
        body = t["response"].encode("utf-8")
        write(out, "at", t["id"], bytes([LINE_LIMIT_1024, selector, 0]) + body)
        write(out, "at", t["id"] + "-bytewise", bytes([LINE_LIMIT_1024, selector, 1, 1]) + body)
        write(out, "parsers", t["id"], "\n".join(t["lines"]).encode("utf-8"))
    for v in vectors:
        write(out, "parsers", "vector-" + v["id"], v["response"].encode("utf-8"))

    ok = "\r\nOK\r\n"
    healthy = [ok, ok, "\r\nQuectel\r\n\r\nOK\r\n", "\r\nEC25\r\n\r\nOK\r\n", "\r\nEC25EFAR06A06M4G\r\n\r\nOK\r\n",
               "\r\n356938035643809\r\n\r\nOK\r\n", "\r\n262011234567890\r\n\r\nOK\r\n",
               "\r\n+CCID: 89490200001234567899\r\n\r\nOK\r\n"]
    write(out, "identity", "healthy", session(healthy))
    write(out, "identity", "silent", session([]))
    write(out, "identity", "no-sim", session(healthy[:6] + ["\r\n+CME ERROR: 10\r\n", "\r\n+CME ERROR: 10\r\n"]))
    write(out, "identity", "plain-error-then-cpin",
          session(healthy[:6] + ["\r\nERROR\r\n", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n", "\r\nERROR\r\n"]))
    position = {"text": 2, "imei": 5, "imsi": 6, "iccid": 7, "crsm": 7, "pin": 6}
    for t in transcripts:
        where = position.get(t["extract"])
        if where is None:
            continue
        answers = list(healthy)
        answers[where] = t["response"]
        if t["extract"] == "crsm":  # +CCID fails, the vendor command is absent: the +CRSM fallback answers
            answers[7:] = ["\r\nERROR\r\n", t["response"]]
        write(out, "identity", t["id"], session([a.encode("utf-8") for a in answers]))

    with open(os.path.join(ROOT, "config", "cellprovd.toml.example"), "rb") as f:
        example = f.read()
    write(out, "config", "example", example)
    write(out, "config", "minimal", b'[discovery]\nudev = false\nstatic_ports = ["/dev/ttyS1"]\n')
    write(out, "config", "backend", b'[backend]\nurl = "https://enroll.example.net"\ntoken_file = "/t"\n'
          b'[device]\nserial = "GW-1"\n[daemon]\nlog_level = "debug"\n')
    write(out, "config", "unknown-key", b"[discovery]\nudevv = true\n")

    with open(os.path.join(ROOT, "udev", "ports.tsv"), "rb") as f:
        table = f.read()
    write(out, "ports", "ports.tsv", table)
    write(out, "ports", "small", b"vid\tpid\tinterface\trole\tfamily\n2c7c\t0125\t04\tat\tq\n12d1\t1506\tFF/02/01\tat\th\n")

    def answer(status, body):
        return struct.pack(">H", status - 100) + body

    write(out, "scrub", "ok", answer(201, b'{"status":"ok"}'))
    write(out, "scrub", "conflict", answer(409, b'{"error":"duplicate"}'))
    write(out, "scrub", "echo-imei", answer(400, b'{"error":"bad imei 356938035643809"}'))
    write(out, "scrub", "echo-grouped", answer(422, b'{"error":"iccid 8944 2000 5367 1052 499 refused"}'))
    write(out, "scrub", "echo-hex", answer(403, b'{"detail":"984402003576012594F9"}'))
    write(out, "scrub", "unavailable", answer(503, b"<html>Service Unavailable</html>"))


if __name__ == "__main__":
    main()

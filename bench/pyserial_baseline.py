#!/usr/bin/env python3
"""The baseline of `make bench`: a plain pyserial script reading the three identities.

ATE0, AT+CGSN, AT+CIMI, AT+CCID on the given port, each answer read until its final result code.
Prints the in-process time (open + 4 commands) in milliseconds on stdout.
"""
import sys
import time

import serial


def command(port, line):
    port.write(line.encode() + b"\r")
    lines = []
    buf = b""
    while True:
        chunk = port.read(port.in_waiting or 1)
        if not chunk:
            raise TimeoutError(line)
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            text = raw.strip().decode(errors="replace")
            if not text:
                continue
            if text in ("OK", "ERROR") or text.startswith("+CME ERROR"):
                return lines, text
            lines.append(text)


def main():
    start = time.perf_counter()
    with serial.Serial(sys.argv[1], 115200, timeout=2) as port:
        for cmd in ("ATE0", "AT+CGSN", "AT+CIMI", "AT+CCID"):
            command(port, cmd)
    print(f"{(time.perf_counter() - start) * 1000:.3f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# registry-suite: grafana
"""docs/grafana-registry.json against a running registry (issue 17 item 6), black box.

Starts the built registry on SQLite, posts two device events (the second raises a flag) and reads the overview (so that every labelled series
has a sample), then reads its real /metrics. Every metric name the dashboard's PromQL expressions use must be one
the registry exposes (a histogram's `_bucket`, `_sum` and `_count` series as printed). The expression reader is
checked first on expressions with a known answer, so a reader that finds nothing cannot pass the check.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402

T = blackbox.Checks("registry grafana dashboard")
DASHBOARD = os.path.join(h.REPO, "docs", "grafana-registry.json")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan"}


def skip(reason):
    blackbox.skip(T.name, reason)


def metric_names(expr):
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords, label names
    (in `{...}`, `by (...)`, `without (...)`), durations or strings."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def exposed(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def main():
    # The reader itself, on known answers.
    T.check(metric_names('sum by (le, route) (rate(a_bucket{status=~"5.."}[5m])) / b_total') == {"a_bucket", "b_total"},
            "the expression reader finds the metrics and skips functions, labels and durations")
    T.check(metric_names("histogram_quantile(0.99, x)") == {"x"}, "the reader skips numbers")

    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash.get("panels", []) for t in p.get("targets", [])]
    T.check(len(exprs) >= 6, f"the dashboard has its expressions ({len(exprs)})")
    used = set()
    for e in exprs:
        used |= metric_names(e)
    T.check(all(n.startswith("cellprov_registry_") for n in used), f"only the registry's metrics are used: {sorted(used)}")

    h.require_registry(skip)
    work = tempfile.mkdtemp(prefix="cellprov-grafana-")
    reg = h.Registry("sqlite://" + os.path.join(work, "registry.db"), work)
    try:
        reg.start()
        token = reg.device_add("GW-GRAFANA-1")
        viewer = reg.operator_add("grafana", "viewer")
        imei, imsi, iccid = h.make_imei(), h.make_imsi(), h.make_iccid()
        ev = h.event("GW-GRAFANA-1", "usb-1", "enrolled", 1, imei, imsi, iccid)
        T.check(reg.post_event(token, ev).status == 201, "one event stored")
        # A module swap: raises imei_changed, so the flag counters have a series.
        swap = h.event("GW-GRAFANA-1", "usb-1", "imei_changed", 2, h.make_imei(), imsi, iccid,
                       previous={"imei": imei, "imsi": imsi, "iccid": iccid})
        T.check(reg.post_event(token, swap).status == 201, "a module swap stored")
        T.check(reg.request("GET", "/v1/overview", token=viewer).status == 200, "the overview answers")
        r = reg.request("GET", "/metrics")
        T.check(r.status == 200, "/metrics answers")
        have = exposed(r.body.decode())
        missing = sorted(used - have)
        T.check(not missing, f"every metric the dashboard uses is exposed (missing: {missing})")
        T.check(reg.stop() == 0, "the registry exits 0 on SIGTERM")
    except Exception as e:  # noqa: BLE001
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
        reg.kill()
    T.finish()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks docs/registry-api.yaml, the registry's operator API (OpenAPI 3.0), against the code.

1. The document is valid OpenAPI 3.0 (openapi-spec-validator).
2. Routes: every `router.get/post("...")` of the operator API and operations routes
   (Sources/CellprovRegistryHTTP/OperatorAPI.swift, OperationsRoutes.swift; the device API is docs/enrollment-api.yaml,
   the pages are HTML; and the `/v1/` routes of Overview.swift) is a path and method of the document, and every path and method of the document is a
   route of the code.
3. Shapes: the JSON property names of each answer type (CodingKeys, or stored properties without CodingKeys, of
   Sources/CellprovRegistryHTTP/Views.swift, and the overview's in Overview.swift) are exactly the properties of its
   schema.
4. Flag kinds: the schema's enum is FlagKind's raw values (Sources/CellprovRegistryCore/RegistryFlags.swift).

Installs nothing; without openapi-spec-validator it prints "skipped" and exits 0. Exit 1 on any finding.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "registry-api.yaml")
HTTP = os.path.join(ROOT, "Sources", "CellprovRegistryHTTP")
CORE = os.path.join(ROOT, "Sources", "CellprovRegistryCore", "RegistryFlags.swift")
PREFIX = "check-registry-api"

try:
    import yaml
    import openapi_spec_validator as osv
except ImportError as error:
    print(f"{PREFIX}: skipped ({error.name or error} not installed; python3 -m pip install openapi-spec-validator)")
    sys.exit(0)

# Answer types and their schemas.
SHAPES = {
    "SlotView": "Slot",
    "UnitSummaryView": "UnitSummary",
    "TimelineEntryView": "TimelineEntry",
    "EvidenceView": "Evidence",
    "FlagView": "Flag",
    "LostView": "LostState",
    "UnitDetailView": "UnitDetail",
    "AuditView": "AuditEntry",
    "IdentityView": "Identity",
}
# The overview's answer types (Sources/CellprovRegistryCore/Overview.swift: `FleetOverview` is the body, encoded as
# it stands) and their schemas.
OVERVIEW_SHAPES = {
    "FleetOverview": "Overview",
    "Units": "OverviewUnits",
    "Day": "OverviewDay",
    "Week": "OverviewWeek",
    "FirmwareCount": "FirmwareCount",
}

failures = []


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def struct_body(text, name):
    m = re.search(r"\bstruct " + re.escape(name) + r"\b[^{]*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def json_names(body):
    ck = None
    for m in re.finditer(r"enum CodingKeys: String, CodingKey \{(.*?)\n\s*\}", body, re.S):
        # The struct's own CodingKeys: at its top level, not a nested type's.
        if body[:m.start()].count("{") == body[:m.start()].count("}"):
            ck = m
            break
    if ck:
        names = []
        for line in ck.group(1).splitlines():
            line = line.strip()
            if not line.startswith("case "):
                continue
            for part in line[5:].split(","):
                part = part.strip()
                m = re.match(r'(\w+)\s*=\s*"([^"]+)"', part)
                names.append(m.group(2) if m else part)
        return set(names)
    # Without CodingKeys: stored properties at the top level of the struct.
    names, depth = set(), 0
    for line in body.splitlines():
        if depth == 0:
            m = re.match(r"\s*(?:public )?(?:var|let) (\w+)\s*:", line)
            if m and "{" not in line:
                names.add(m.group(1))
        depth += line.count("{") - line.count("}")
    return names


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DOC
    spec = yaml.safe_load(read(path))
    try:
        osv.validate(spec)
    except Exception as error:  # noqa: BLE001 - any validation error is a finding
        failures.append(f"not valid OpenAPI 3.0: {error}")

    code_routes = set()
    for name in ("OperatorAPI.swift", "OperationsRoutes.swift"):
        text = read(os.path.join(HTTP, name))
        for method, route in re.findall(r'router\.(get|post|put|delete|patch)\("([^"]+)"\)', text):
            if route == "/v1/enrollments":
                continue  # the device API: docs/enrollment-api.yaml
            code_routes.add((method, route))
    # Overview.swift serves the API route and the page (HTML): only the former is in the document.
    for method, route in re.findall(r'router\.(get|post)\("([^"]+)"\)', read(os.path.join(HTTP, "Overview.swift"))):
        if route.startswith("/v1/"):
            code_routes.add((method, route))
    doc_routes = set()
    for route, item in (spec.get("paths") or {}).items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch"):
                doc_routes.add((method, route))
    for method, route in sorted(code_routes - doc_routes):
        failures.append(f"route {method.upper()} {route} is served but not in the document")
    for method, route in sorted(doc_routes - code_routes):
        failures.append(f"path {method.upper()} {route} is in the document but not served")

    views = read(os.path.join(HTTP, "Views.swift"))
    overview = read(os.path.join(ROOT, "Sources", "CellprovRegistryCore", "Overview.swift"))
    schemas = spec.get("components", {}).get("schemas", {})
    shapes = [(views, s, d) for s, d in SHAPES.items()] + [(overview, s, d) for s, d in OVERVIEW_SHAPES.items()]
    for text, struct, schema in shapes:
        body = struct_body(text, struct)
        if body is None:
            failures.append(f"{struct} not found")
            continue
        code = json_names(body)
        doc = set((schemas.get(schema) or {}).get("properties", {}).keys())
        if code != doc:
            failures.append(
                f"{struct} vs schema {schema}: only in code {sorted(code - doc)}, only in document {sorted(doc - code)}")

    flag_kind = read(CORE).split("public enum FlagKind", 1)[1].split("\n}", 1)[0]
    kinds = set(re.findall(r'case \w+ = "([a-z_]+)"', flag_kind))
    doc_kinds = set(schemas["Flag"]["properties"]["kind"]["enum"])
    if kinds != doc_kinds:
        failures.append(f"flag kinds: only in code {sorted(kinds - doc_kinds)}, only in document {sorted(doc_kinds - kinds)}")

    for f in failures:
        print(f"{PREFIX}: {f}", file=sys.stderr)
    if failures:
        print(f"{PREFIX}: FAILED ({len(failures)} findings)", file=sys.stderr)
        return 1
    print(f"{PREFIX}: ok ({len(code_routes)} routes, {len(shapes)} shapes, {len(kinds)} flag kinds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

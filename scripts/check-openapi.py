#!/usr/bin/env python3
"""Checks docs/enrollment-api.yaml, the enrollment API's OpenAPI document.

1. The document is valid OpenAPI 3.0 (openapi-spec-validator).
2. Every request example validates against the EnrollmentEvent schema, has exactly the keys the schema
   declares (no unknown key, every required key), follows the per-type rules of the document's table
   (previous / usb_serial_changed / other_slots / severity), and every event type has one example.
3. When the Swift sources are beside it: the schema matches what the code writes. Property names and
   which ones are always present come from EnrollmentRequest (Sources/CellprovEnrollmentAPI/EnrollmentAPI.swift);
   the event types (CellprovCore's IdentityEventType plus the API-only APIEventType of EnrollmentAPI.swift),
   severities, problem fields, problem codes and the module's `source` values (ObservationSource) from
   CellprovCore. A renamed, added or
   removed field on either side fails the check.

Installs nothing. Without the Python modules it needs (openapi-spec-validator, which brings PyYAML and
openapi-schema-validator), it prints "skipped" and exits 0. Exit status 1 on any finding.

    python3 scripts/check-openapi.py [path/to/enrollment-api.yaml]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "enrollment-api.yaml")
REPORTER = os.path.join(ROOT, "Sources", "CellprovEnrollmentAPI", "EnrollmentAPI.swift")
EVENT = os.path.join(ROOT, "Sources", "CellprovCore", "Changes", "IdentityEvent.swift")
PROBLEM = os.path.join(ROOT, "Sources", "CellprovCore", "Problem.swift")
SOURCE = os.path.join(ROOT, "Sources", "CellprovCore", "ModemManager", "ModemManagerModem.swift")

PREFIX = "check-openapi"

try:
    import yaml
    import openapi_spec_validator as osv
    from openapi_schema_validator import OAS30Validator
except ImportError as error:
    print(f"{PREFIX}: skipped ({error.name or error} not installed; "
          f"python3 -m pip install openapi-spec-validator to run this check)")
    sys.exit(0)

# Per event type: allowed severities, whether previous is null ("null"), an object ("object") or either
# ("either"), and whether usb_serial_changed / other_slots may appear. Mirrors the table in the document's
# description and the rules in Sources/CellprovCore/Changes/ChangeDetector.swift.
TYPE_RULES = {
    "enrolled": ({"info"}, "null", False, False),
    "sim_changed": ({"warning"}, "object", False, False),
    "profile_switched": ({"info"}, "object", False, False),
    "sim_slot_switched": ({"notice"}, "object", False, False),
    "profile_clone_suspected": ({"critical"}, "object", False, False),
    "imei_changed": ({"warning", "critical"}, "object", True, False),
    "sim_removed": ({"warning"}, "object", False, False),
    "sim_inserted": ({"info"}, "object", False, False),
    "identity_invalid": ({"warning", "critical"}, "either", False, False),
    "duplicate_imei": ({"critical"}, "null", False, True),
    "firmware_changed": ({"info"}, "null", False, False),
    "manufactured": ({"info"}, "null", False, False),
}

failures = []


def fail(message):
    failures.append(message)


# MARK: - Schema helpers


def resolve(spec, node):
    """Follows local $refs until a schema without one."""
    seen = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"cannot resolve {ref}")
        seen.add(ref)
        target = spec
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def flatten(spec, schema):
    """The properties and required names of an object schema, merging allOf."""
    schema = resolve(spec, schema)
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        p, r = flatten(spec, part)
        properties.update(p)
        required |= r
    return properties, required


def is_object_schema(spec, schema):
    schema = resolve(spec, schema)
    return schema.get("type") == "object" or "properties" in schema or any(
        is_object_schema(spec, s) for s in schema.get("allOf", []))


def check_keys(spec, schema, value, where):
    """Exactly the declared keys, recursively: nothing unknown, nothing required missing."""
    schema = resolve(spec, schema)
    if value is None:
        return
    if isinstance(value, dict) and is_object_schema(spec, schema):
        properties, required = flatten(spec, schema)
        for key in value:
            if key not in properties:
                fail(f"{where}: key '{key}' is not in the schema")
        for key in required:
            if key not in value:
                fail(f"{where}: required key '{key}' is missing")
        for key, sub in value.items():
            if key in properties:
                check_keys(spec, properties[key], sub, f"{where}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check_keys(spec, schema["items"], item, f"{where}[{i}]")


# MARK: - 1. The document


def load_document(path):
    try:
        with open(path, encoding="utf-8") as f:
            spec = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as error:
        print(f"{PREFIX}: {path}: {error}", file=sys.stderr)
        sys.exit(1)
    validate = getattr(osv, "validate", None) or getattr(osv, "validate_spec")
    try:
        validate(spec)
    except Exception as error:  # the validator's own exception types vary between versions
        fail(f"{os.path.relpath(path, ROOT)}: not a valid OpenAPI document: {error}")
    return spec


# MARK: - 2. The examples


def check_examples(spec):
    operation = spec["paths"]["/v1/enrollments"]["post"]
    media = operation["requestBody"]["content"]["application/json"]
    event_schema = media["schema"]
    examples = media.get("examples", {})
    validator = OAS30Validator(
        {**resolve(spec, event_schema), "components": spec["components"]},
        format_checker=OAS30Validator.FORMAT_CHECKER)
    types = resolve(spec, spec["components"]["schemas"]["EventType"])["enum"]
    seen = {}
    for name, example in examples.items():
        value = example.get("value")
        where = f"example '{name}'"
        if not isinstance(value, dict):
            fail(f"{where}: no value")
            continue
        for error in validator.iter_errors(value):
            path = ".".join(str(p) for p in error.absolute_path) or "(body)"
            fail(f"{where}: {path}: {error.message}")
        check_keys(spec, event_schema, value, where)
        kind = value.get("type")
        seen.setdefault(kind, []).append(name)
        rules = TYPE_RULES.get(kind)
        if rules is None:
            fail(f"{where}: type '{kind}' has no rule in this script (add it to TYPE_RULES)")
            continue
        severities, previous, usb_flag, others = rules
        if value.get("severity") not in severities:
            fail(f"{where}: severity '{value.get('severity')}' is not one of {sorted(severities)} for {kind}")
        if previous == "null" and value.get("previous") is not None:
            fail(f"{where}: previous must be null for {kind}")
        if previous == "object" and not isinstance(value.get("previous"), dict):
            fail(f"{where}: previous must be an object for {kind}")
        if "usb_serial_changed" in value and not usb_flag:
            fail(f"{where}: usb_serial_changed appears only on imei_changed")
        if kind == "imei_changed":
            flag = value.get("usb_serial_changed")
            expected = "warning" if flag is True else "critical"
            if value.get("severity") != expected:
                fail(f"{where}: usb_serial_changed {flag} goes with severity {expected}")
        if ("other_slots" in value) != others:
            fail(f"{where}: other_slots appears on duplicate_imei, and only there")
        if ("previous_revision" in value) != (kind == "firmware_changed"):
            fail(f"{where}: previous_revision appears on firmware_changed, and only there")
        if kind == "sim_removed" and set(value.get("identity", {})) != {"imei"}:
            fail(f"{where}: a sim_removed identity holds the IMEI only")
        if kind in ("enrolled", "manufactured") and set(value.get("identity", {})) != {"imei", "imsi", "iccid"}:
            fail(f"{where}: an {kind} identity holds IMEI, IMSI and ICCID")
        if kind == "manufactured":
            if value.get("sequence") != 1:
                fail(f"{where}: a manufactured record has sequence 1")
            if "references" in value:
                fail(f"{where}: a manufactured record carries no references (the station's key is not the unit's)")
            if any(p.get("severity") == "error" for p in value.get("problems", [])):
                fail(f"{where}: a manufactured record comes from a valid read (no error problem)")
        extra = set(value.get("references") or {}) - set(value.get("identity") or {})
        if extra:
            fail(f"{where}: references {sorted(extra)} name values that are not in identity")
    for kind in types:
        if kind not in seen:
            fail(f"no request example for event type '{kind}'")
    for kind in seen:
        if kind not in types:
            fail(f"example of unknown event type '{kind}'")
    return len(examples)


# MARK: - 3. The sources


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def block(text, header):
    """The text between the braces that follow the first match of `header` (a regex)."""
    match = re.search(header, text)
    if not match:
        return None
    start = text.index("{", match.end() - 1 if text[match.end() - 1] == "{" else match.end())
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return None


def top_level(body):
    """`body` with the contents of every nested brace block removed (an empty `{}` stays in its place, so that a
    computed property still shows its brace)."""
    out, depth = [], 0
    for ch in body:
        if ch == "{":
            if depth == 0:
                out.append("{}")
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def coding_keys(body):
    """{swift name: JSON name} from a struct's own CodingKeys enum (the last one in its body: nested structs come
    first)."""
    last = body.rfind("enum CodingKeys")
    coding = block(body[last:], r"enum\s+CodingKeys\b[^{]*\{") if last >= 0 else None
    return dict(re.findall(r"(\w+)\s*=\s*\"([^\"]+)\"", coding or ""))


def stored_properties(body):
    """{JSON name: optional} of a Swift struct's stored `var`s (computed ones, `var x: T { ... }`, are skipped),
    renamed by its CodingKeys enum if it has one."""
    keys = coding_keys(body)
    found = {}
    for name, type_, brace in re.findall(r"\bvar\s+(\w+)\s*:\s*([^\n=;{]+)(\{?)", top_level(body)):
        if brace:
            continue
        found[keys.get(name, name)] = type_.strip().endswith("?")
    return found


def enum_raw_values(text, header):
    body = block(text, header)
    if body is None:
        return None
    values = []
    for line in top_level(body).splitlines():
        line = line.split("//")[0].strip()
        if not line.startswith("case "):
            continue
        for item in line[5:].split(","):
            item = item.strip()
            m = re.fullmatch(r"`?(\w+)`?(?:\s*=\s*\"([^\"]*)\")?", item)
            if m:
                values.append(m.group(2) if m.group(2) is not None else m.group(1))
    return values


def compare_object(spec, schema_name, swift_props, where, always_present=None):
    properties, required = flatten(spec, spec["components"]["schemas"][schema_name])
    if set(properties) != set(swift_props):
        missing = sorted(set(swift_props) - set(properties))
        extra = sorted(set(properties) - set(swift_props))
        if missing:
            fail(f"schema {schema_name}: the code writes {missing}, the schema does not declare them ({where})")
        if extra:
            fail(f"schema {schema_name}: declares {extra}, the code does not write them ({where})")
    present = always_present if always_present is not None else {n for n, opt in swift_props.items() if not opt}
    for name in swift_props:
        if name in present and name not in required:
            fail(f"schema {schema_name}: '{name}' is always written, so it must be required ({where})")
        if name not in present and name in required:
            fail(f"schema {schema_name}: '{name}' can be left out, so it must not be required ({where})")


def check_sources(spec):
    if not all(os.path.exists(p) for p in (REPORTER, EVENT, PROBLEM)):
        print(f"{PREFIX}: sources not found beside the document; source comparison skipped")
        return
    schemas = spec["components"]["schemas"]
    reporter = read(REPORTER)
    body = block(reporter, r"struct\s+EnrollmentRequest\b[^{]*\{")
    if body is None:
        fail("EnrollmentAPI.swift: struct EnrollmentRequest not found")
        return
    nested = {
        "Device": ("Device",),
        "Module": ("Module",),
        "Identity": ("Identity", "PreviousIdentity"),
        "ProblemBody": ("Problem",),
        "StateLostBody": ("StateLost",),
        "References": ("References",),
    }
    for swift_name, schema_names in nested.items():
        struct = block(body, r"struct\s+" + swift_name + r"\b[^{]*\{")
        if struct is None:
            fail(f"EnrollmentAPI.swift: struct {swift_name} not found")
            continue
        props = stored_properties(struct)
        for schema_name in schema_names:
            compare_object(spec, schema_name, props, f"Body.{swift_name}")
    # Top level: the custom encode(to:) decides what is always written.
    props = stored_properties(body)
    renames = coding_keys(body)
    # The top-level encode(to:) is the struct's last one (the nested structs' come first).
    last = body.rfind("func encode(to")
    encode_fn = block(body[last:], r"func\s+encode\(to\b[^{]*\{") if last >= 0 else None
    encode_fn = encode_fn or ""
    encoded = {
        renames.get(key, key): call
        for call, key in re.findall(r"c\.(encode|encodeIfPresent)\(\s*\w+\s*,\s*forKey:\s*\.(\w+)\)", encode_fn)
    }
    if set(encoded) != set(props):
        fail(f"EnrollmentAPI.swift: EnrollmentRequest's encode(to:) writes {sorted(encoded)}, its properties are {sorted(props)}")
    always = {k for k, call in encoded.items() if call == "encode"}
    compare_object(spec, "EnrollmentEvent", props, "EnrollmentPayload.Body", always_present=always)
    # A property written with encode() although optional is written as null: the schema must say nullable.
    event_props, _ = flatten(spec, schemas["EnrollmentEvent"])
    for name in always:
        if props.get(name) and name in event_props:
            target = resolve(spec, event_props[name])
            if not target.get("nullable"):
                fail(f"schema EnrollmentEvent: '{name}' is written as null when absent, so it must be nullable")

    event = read(EVENT)
    problem = read(PROBLEM)
    # The state-loss reasons: StateLossReason (CellprovCore) against StateLost.reason.
    reasons = enum_raw_values(event, r"enum\s+StateLossReason\b[^{]*\{")
    if "StateLost" in schemas:
        declared = resolve(spec, flatten(spec, schemas["StateLost"])[0]["reason"]).get("enum", [])
        if reasons is None:
            fail("sources: enum StateLossReason not found")
        elif sorted(reasons) != sorted(declared):
            fail(f"schema StateLost.reason: enum {sorted(declared)} differs from StateLossReason {sorted(reasons)}")
    # The API's event types: cellprovd's (IdentityEventType) and the API-only ones (APIEventType).
    detector_types = enum_raw_values(event, r"enum\s+IdentityEventType\b[^{]*\{")
    api_types = enum_raw_values(reporter, r"enum\s+APIEventType\b[^{]*\{")
    if api_types is None:
        fail("EnrollmentAPI.swift: enum APIEventType not found")
    enums = [
        ("EventType", None if detector_types is None else detector_types + (api_types or []),
         "IdentityEventType + APIEventType"),
        ("EventSeverity", enum_raw_values(event, r"enum\s+EventSeverity\b[^{]*\{"), "EventSeverity"),
    ]
    problem_props, _ = flatten(spec, schemas["Problem"])
    for schema_name, values, swift in enums:
        if values is None:
            fail(f"sources: enum {swift} not found")
            continue
        declared = resolve(spec, schemas[schema_name]).get("enum", [])
        if sorted(values) != sorted(declared):
            fail(f"schema {schema_name}: enum {sorted(declared)} differs from {swift} {sorted(values)}")
    for prop, header, swift in [
        ("field", r"enum\s+ProblemField\b[^{]*\{", "ProblemField"),
        ("severity", r"enum\s+Severity\b[^{]*\{", "Severity"),
    ]:
        values = enum_raw_values(problem, header)
        declared = resolve(spec, problem_props[prop]).get("enum", [])
        if values is None:
            fail(f"sources: enum {swift} not found")
        elif sorted(values) != sorted(declared):
            fail(f"schema Problem.{prop}: enum {sorted(declared)} differs from {swift} {sorted(values)}")
    # Module.source: how the identities were read (ObservationSource: at, modemmanager).
    if os.path.exists(SOURCE):
        values = enum_raw_values(read(SOURCE), r"enum\s+ObservationSource\b[^{]*\{")
        module_props, _ = flatten(spec, schemas["Module"])
        declared = resolve(spec, module_props["source"]).get("enum", []) if "source" in module_props else []
        if values is None:
            fail("sources: enum ObservationSource not found")
        elif sorted(values) != sorted(declared):
            fail(f"schema Module.source: enum {sorted(declared)} differs from ObservationSource {sorted(values)}")
    else:
        fail(f"sources: {os.path.relpath(SOURCE, ROOT)} not found (ObservationSource)")
    codes = re.findall(r'Code\(rawValue:\s*"(\w+)"\)', problem)
    described = resolve(spec, problem_props["code"]).get("description", "")
    listed = set(re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b|\btimeout\b|\bgarbage\b", described))
    for code in codes:
        if code not in listed:
            fail(f"schema Problem.code: known code '{code}' (Problem.swift) is not listed in its description")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DOC
    spec = load_document(path)
    if failures:
        for f in failures:
            print(f"{PREFIX}: {f}", file=sys.stderr)
        return 1
    count = check_examples(spec)
    check_sources(spec)
    if failures:
        for f in failures:
            print(f"{PREFIX}: {f}", file=sys.stderr)
        print(f"{PREFIX}: FAILED ({len(failures)} finding{'s' if len(failures) != 1 else ''})", file=sys.stderr)
        return 1
    print(f"{PREFIX}: {os.path.relpath(path, ROOT)} is valid OpenAPI 3.0; {count} examples match the schema "
          f"and the sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())

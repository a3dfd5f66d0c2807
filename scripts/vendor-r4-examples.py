#!/usr/bin/env python3
"""Vendors the official FHIR R4 example resources into conformance-tests/corpus/r4-examples/.

Input: the npm package hl7.fhir.r4.examples 4.0.1 (HL7, CC0-1.0), either an already extracted
`package/` directory given as the only argument or, without an argument, fetched with
`npm pack` into a temporary directory.

Selection: every `*.json` example whose resourceType is a data resource type, i.e. not one of
the conformance and terminology types listed in EXCLUDED, and whose file is at most 200 KB
(the big definition Bundles are left out). Files are copied byte for byte.

Reproduce: python3 scripts/vendor-r4-examples.py [path/to/package]
"""
import glob, json, os, shutil, subprocess, sys, tarfile, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, "conformance-tests", "corpus", "r4-examples")
PACKAGE = "hl7.fhir.r4.examples@4.0.1"
MAX_BYTES = 200 * 1024
EXCLUDED = {
    "SearchParameter", "ValueSet", "CodeSystem", "StructureDefinition", "ConceptMap",
    "OperationDefinition", "NamingSystem", "CompartmentDefinition", "CapabilityStatement",
    "ImplementationGuide", "StructureMap",
}


def fetch(into):
    out = subprocess.check_output(["npm", "pack", PACKAGE, "--silent"], cwd=into, text=True)
    tgz = os.path.join(into, out.strip().splitlines()[-1])
    with tarfile.open(tgz) as t:
        t.extractall(into)
    return os.path.join(into, "package")


def selected(package):
    for path in sorted(glob.glob(os.path.join(package, "*.json"))):
        name = os.path.basename(path)
        if name.startswith(".") or name == "package.json" or os.path.getsize(path) > MAX_BYTES:
            continue
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        kind = resource.get("resourceType")
        if kind and kind not in EXCLUDED and resource.get("id"):
            yield path


def vendor(package):
    os.makedirs(DEST, exist_ok=True)
    for old in glob.glob(os.path.join(DEST, "*.json")):
        os.remove(old)
    names = list(selected(package))
    for path in names:
        shutil.copyfile(path, os.path.join(DEST, os.path.basename(path)))
    print(f"{len(names)} examples copied to {os.path.relpath(DEST, ROOT)}")


def main():
    if len(sys.argv) > 1:
        vendor(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            vendor(fetch(tmp))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generates fhir-model/src/search/registry_r4.rs from the FHIR R4 definitions.

Usage (from the repository root):

    python3 scripts/generate-search-registry.py [PACKAGE_DIR]

PACKAGE_DIR is the extracted `package/` folder of the npm package hl7.fhir.r4.examples@4.0.1
(it holds SearchParameter-*.json, StructureDefinition-*.json and ValueSet-*.json). Without it
the script runs `npm pack hl7.fhir.r4.examples@4.0.1` in a temporary directory and reads that.
The output is deterministic, so running it twice gives the same file; it is formatted with
`rustfmt` when rustfmt is on PATH.

What it writes:
- SEARCH_PARAMETERS: one row per (base type, code) of every SearchParameter definition, sorted
  by (resource type, name). Definitions without `base` are skipped and listed in a comment; when
  two definitions give the same (base, code), the core one is kept and the other noted.
- CODE_SYSTEMS: (element path, system) for `code` elements with a required binding to a value
  set that includes exactly one whole code system, also through the data types an element has
  (`Patient.address.use` from `Address.use`).
- SUMMARY_ELEMENTS and MANDATORY_ELEMENTS: per resource type, the top-level elements marked
  isSummary, and those with min >= 1 (choice elements without `[x]`).
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict

PACKAGE = "hl7.fhir.r4.examples"
VERSION = "4.0.1"
OUTPUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "fhir-model", "src", "search", "registry_r4.rs"
)
CORE_PREFIX = "http://hl7.org/fhir/SearchParameter/"
PARAM_TYPES = {
    "number": "Number",
    "date": "Date",
    "string": "String",
    "token": "Token",
    "reference": "Reference",
    "composite": "Composite",
    "quantity": "Quantity",
    "uri": "Uri",
    "special": "Special",
}
# How deep data types are followed for bindings: Dosage.timing (Timing).repeat.durationUnit.
DATATYPE_DEPTH = 3


def fetch_package(tmp):
    """Runs `npm pack` in `tmp` and returns the extracted package folder."""
    subprocess.run(
        ["npm", "pack", "--loglevel=warn", f"{PACKAGE}@{VERSION}"],
        cwd=tmp,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with tarfile.open(os.path.join(tmp, f"{PACKAGE}-{VERSION}.tgz")) as tar:
        # The "data" filter refuses absolute paths and links out of the folder (Python 3.12+).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(tmp, filter="data")
        else:
            tar.extractall(tmp)
    return os.path.join(tmp, "package")


def load(package, pattern):
    out = []
    for path in sorted(glob.glob(os.path.join(package, pattern))):
        with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
    return out


def rust_str(text):
    """A Rust string literal for `text`."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def documentation(description, base):
    """One short line: the base's own line of a "Multiple Resources" description, else the
    first line, cut at its first sentence and at about 200 characters."""
    text = description or ""
    own = re.search(r"^\* \[" + re.escape(base) + r"\]\([^)]*\): (.*)$", text, re.MULTILINE)
    line = own.group(1) if own else next((l for l in text.splitlines() if l.strip()), "")
    line = re.sub(r"\s+", " ", line).strip()
    sentence = re.match(r"(.*?[a-z0-9)][.!?])(\s|$)", line)
    if sentence:
        line = sentence.group(1)
    if len(line) > 200:
        line = line[:197].rsplit(" ", 1)[0] + "..."
    return line


def preference(definition):
    """Sort key choosing among definitions of one (base, code): core before extension and
    example definitions."""
    url = definition["url"]
    return (
        not url.startswith(CORE_PREFIX),
        "extensions" in url,
        definition.get("id", "").startswith("example"),
        url,
    )


def search_rows(definitions):
    by_url = {d["url"]: d for d in definitions}
    skipped, chosen, duplicates = [], {}, []
    for d in definitions:
        if not d.get("base"):
            skipped.append(d["url"])
            continue
        for base in d["base"]:
            key = (base, d["code"])
            if key in chosen:
                keep, drop = sorted([chosen[key], d], key=preference)
                chosen[key] = keep
                duplicates.append((key, keep["url"], drop["url"]))
            else:
                chosen[key] = d
    rows = []
    for (base, code), d in sorted(chosen.items()):
        components = []
        for c in d.get("component", []):
            target = by_url[c["definition"]]
            components.append((target["code"], PARAM_TYPES[target["type"]], c["expression"]))
        rows.append(
            {
                "resource_type": base,
                "name": code,
                "kind": PARAM_TYPES[d["type"]],
                "expression": d.get("expression", ""),
                "targets": sorted(d.get("target", [])),
                "components": components,
                "url": d["url"],
                "documentation": documentation(d.get("description"), base),
            }
        )
    return rows, sorted(skipped), sorted(duplicates)


def single_system(value_set):
    """The one code system a value set includes whole or in part, without filters."""
    compose = (value_set or {}).get("compose", {})
    include = compose.get("include", [])
    if len(include) != 1 or compose.get("exclude"):
        return None
    only = include[0]
    if "system" not in only or only.get("filter") or only.get("valueSet"):
        return None
    return only["system"]


def code_systems(structures, value_sets):
    by_vs = {vs["url"]: vs for vs in value_sets}
    specializations = {
        s["id"]: s
        for s in structures
        if s.get("derivation") == "specialization" and s.get("kind") in ("resource", "complex-type")
    }

    def bindings(type_name, prefix, depth):
        """(path, system) for the code elements of `type_name`, with its name replaced by
        `prefix`, following element data types `depth` more levels."""
        structure = specializations.get(type_name)
        if structure is None:
            return
        for element in structure.get("snapshot", {}).get("element", []):
            path = element["path"]
            if "." not in path:
                continue
            tail = path.split(".", 1)[1]
            if tail.endswith("[x]") or tail in ("id", "extension", "modifierExtension"):
                continue
            full = f"{prefix}.{tail}"
            types = [t["code"] for t in element.get("type", [])]
            binding = element.get("binding", {})
            if types == ["code"] and binding.get("strength") == "required":
                url = binding.get("valueSet", "").split("|")[0]
                system = single_system(by_vs.get(url))
                if system:
                    yield full, system
            elif (
                depth > 0
                and len(types) == 1
                and specializations.get(types[0], {}).get("kind") == "complex-type"
            ):
                yield from bindings(types[0], full, depth - 1)

    rows = set()
    for name, structure in specializations.items():
        if structure["kind"] == "resource" and not structure.get("abstract"):
            rows.update(bindings(name, name, DATATYPE_DEPTH))
    return sorted(rows)


def element_lists(structures):
    summary, mandatory = {}, {}
    for s in structures:
        if s.get("kind") != "resource" or s.get("derivation") != "specialization":
            continue
        if s.get("abstract"):
            continue
        summary_names, mandatory_names = [], []
        for element in s["snapshot"]["element"]:
            parts = element["path"].split(".")
            if len(parts) != 2:
                continue
            name = parts[1].removesuffix("[x]")
            if element.get("isSummary"):
                summary_names.append(name)
            if element.get("min", 0) >= 1:
                mandatory_names.append(name)
        summary[s["id"]] = summary_names
        mandatory[s["id"]] = mandatory_names
    return dict(sorted(summary.items())), dict(sorted(mandatory.items()))


def render(rows, skipped, duplicates, systems, summary, mandatory):
    out = [
        f"//! @generated by scripts/generate-search-registry.py from {PACKAGE} {VERSION} (CC0). Do not edit.",
        "//!",
        "//! Regenerate with `python3 scripts/generate-search-registry.py [path/to/package]`.",
        f"//! {len(rows)} rows: one per (base type, code) of the package's SearchParameter definitions.",
        "//!",
        "//! Definitions skipped because they have no `base`:",
    ]
    out += [f"//! - {url}" for url in skipped]
    out.append("//!")
    out.append("//! Definitions giving the same (base, code) as another; the first url is kept:")
    out += [f"//! - {base}.{code}: {keep} over {drop}" for (base, code), keep, drop in duplicates]
    out += ["", "use super::super::{ComponentDef, ParamType, SearchParamDef};", ""]
    out.append("pub(in crate::search) static SEARCH_PARAMETERS: &[SearchParamDef] = &[")
    for r in rows:
        out.append("    SearchParamDef {")
        out.append(f"        resource_type: {rust_str(r['resource_type'])},")
        out.append(f"        name: {rust_str(r['name'])},")
        out.append(f"        kind: ParamType::{r['kind']},")
        out.append(f"        expression: {rust_str(r['expression'])},")
        out.append("        targets: &[" + ", ".join(rust_str(t) for t in r["targets"]) + "],")
        if r["components"]:
            out.append("        components: &[")
            for name, kind, expression in r["components"]:
                out.append(
                    f"            ComponentDef {{ name: {rust_str(name)}, kind: ParamType::{kind}, "
                    f"expression: {rust_str(expression)} }},"
                )
            out.append("        ],")
        else:
            out.append("        components: &[],")
        out.append(f"        url: {rust_str(r['url'])},")
        out.append(f"        documentation: {rust_str(r['documentation'])},")
        out.append("    },")
    out.append("];")
    out.append("")
    out.append("/// (element path, code system) for `code` elements bound (required) to one code system.")
    out.append("pub(in crate::search) static CODE_SYSTEMS: &[(&str, &str)] = &[")
    out += [f"    ({rust_str(p)}, {rust_str(s)})," for p, s in systems]
    out.append("];")
    for name, table, doc in (
        ("SUMMARY_ELEMENTS", summary, "top-level elements marked isSummary, for `_summary=true`"),
        ("MANDATORY_ELEMENTS", mandatory, "top-level elements with min >= 1, for `_summary=data/text`"),
    ):
        out.append("")
        out.append(f"/// Per resource type, the {doc}.")
        out.append(f"pub(crate) static {name}: &[(&str, &[&str])] = &[")
        for rt, names in table.items():
            out.append(f"    ({rust_str(rt)}, &[" + ", ".join(rust_str(n) for n in names) + "]),")
        out.append("];")
    return "\n".join(out) + "\n"


def generate(package):
    definitions = load(package, "SearchParameter-*.json")
    structures = load(package, "StructureDefinition-*.json")
    value_sets = load(package, "ValueSet-*.json")
    rows, skipped, duplicates = search_rows(definitions)
    systems = code_systems(structures, value_sets)
    summary, mandatory = element_lists(structures)
    output = os.path.normpath(OUTPUT)
    with open(output, "w", encoding="utf-8") as f:
        f.write(render(rows, skipped, duplicates, systems, summary, mandatory))
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", output], check=True)
    print(
        f"{len(definitions)} definitions, {len(skipped)} without base, {len(duplicates)} duplicates: "
        f"{len(rows)} rows; {len(systems)} code-system bindings; {len(summary)} resource types"
    )


def main():
    if len(sys.argv) > 1:
        generate(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="fhir-r4-") as tmp:
            generate(fetch_package(tmp))


if __name__ == "__main__":
    main()

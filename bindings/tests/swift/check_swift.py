"""What can be checked of the Swift bindings without a Swift toolchain.

1. The generated C header compiles with gcc (-Wall -Wextra -Werror, clang's nullability
   qualifiers defined away), and every function it declares is exported by the library
   the bindings were generated from.
2. Every Swift file (the generated bindings, the Swift test, the Swift example) parses
   with tree-sitter-swift without ERROR or MISSING nodes.
3. Every call in the test and the example to a function or initializer that the generated
   bindings declare uses argument labels that one of its declarations accepts (defaulted
   parameters may be left out), and every `OutpostError.X` / `TxOp.x` / `.x` case they
   name exists. This catches a Swift example that drifted from the API.

4. The hand-written layer (bindings/swift/*.swift, given with --layer) parses, its calls
   match the generated API, and the other files' calls to it match its declarations.

5. The Swift package bindings/package.sh lays out (given with --package): Package.swift
   parses, declares the targets whose paths exist, and the XCFramework's Info.plist names
   libraries that are there with their headers and module map.

Usage: check_swift.py GENERATED_SWIFT_DIR LIBRARY [--layer SWIFT_FILE]... [--package DIR] SWIFT_FILE...
Prints one line per check and "swift: N passed, N failed"; exits 1 on any failure.
"""

import pathlib
import re
import subprocess
import sys
import tempfile

import tree_sitter_swift
from tree_sitter import Language, Parser

PARSER = Parser(Language(tree_sitter_swift.language()))
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'ok' if ok else 'FAILED'}: {name}" + (f"\n{detail}" if detail and not ok else ""))


def walk(node):
    yield node
    for child in node.children:
        yield from walk(child)


def text(node):
    return node.text.decode()


def check_header(header, library):
    with tempfile.TemporaryDirectory() as tmp:
        unit = pathlib.Path(tmp) / "unit.c"
        unit.write_text(f'#include "{header.resolve()}"\nint main(void) {{ return 0; }}\n')
        run = subprocess.run(
            # _Nullable/_Nonnull are clang's nullability qualifiers, which Xcode's clang
            # understands and gcc does not: they carry no meaning for the check.
            ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-D_Nullable=", "-D_Nonnull=",
             "-c", str(unit), "-o", f"{tmp}/unit.o"],
            capture_output=True,
            text=True,
        )
    check(f"{header.name} compiles with gcc -Wall -Wextra -Werror", run.returncode == 0, run.stderr)

    declared = set(re.findall(r"\b((?:uniffi|ffi)_outpost_ffi_\w+)\s*\(", header.read_text()))
    nm = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True)
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()}
    missing = sorted(declared - exported)
    check(
        f"{len(declared)} functions of the header are exported by {library.name}",
        nm.returncode == 0 and declared and not missing,
        nm.stderr + "\n".join(f"  missing: {m}" for m in missing),
    )


# Valid Swift that the tree-sitter-swift grammar does not parse, found in UniFFI's
# generated code, with a stand-in the grammar accepts (same line, same meaning):
# - underscored attributes such as `@_documentation(visibility: private)`;
# - the empty tuple as an expression, in `let writeReturn = { () }`.
GRAMMAR_GAPS = [
    (re.compile(rb"@_documentation\(visibility: *\w+\)"), lambda m: b" " * len(m.group(0))),
    (re.compile(rb"\{ \(\) \}"), lambda m: b"{ Void() }"),
]


def parse(path):
    source = path.read_bytes()
    for pattern, stand_in in GRAMMAR_GAPS:
        source = pattern.sub(stand_in, source)
    tree = PARSER.parse(source)
    bad = [
        f"  line {n.start_point[0] + 1}: {'MISSING ' + n.type if n.is_missing else 'ERROR'}: "
        f"{text(n)[:80]!r}"
        for n in walk(tree.root_node)
        if n.type == "ERROR" or n.is_missing
    ]
    check(f"{path.name} parses with tree-sitter-swift", not bad, "\n".join(bad[:20]))
    return tree


def parameters(decl):
    """(label, has_default) of a function or init declaration's parameters, in order."""
    out = []
    children = decl.children
    for i, child in enumerate(children):
        if child.type != "parameter":
            continue
        names = [c for c in child.children if c.type == "simple_identifier"]
        label = text(child.child_by_field_name("external_name") or names[0]) if names else "_"
        # A default value follows the parameter as `= expr` among the declaration's children.
        has_default = i + 1 < len(children) and text(children[i + 1]) == "="
        out.append((None if label == "_" else label, has_default))
    return out


def api_of(tree):
    """Functions and initializers by name, and the cases of each enum."""
    functions, cases = {}, {}
    for node in walk(tree.root_node):
        if node.type == "function_declaration":
            name = node.child_by_field_name("name")
            if name is not None:
                functions.setdefault(text(name).strip("`"), []).append(parameters(node))
        elif node.type == "class_declaration":
            type_name = node.child_by_field_name("name")
            body = node.child_by_field_name("body")
            if type_name is None or body is None:
                continue
            # An extension of a type declared elsewhere (Foundation's `Data`) adds initializers
            # to those it has: calls to the others are not the generated API's to check.
            extension = any(text(c) == "extension" for c in node.children[:3])
            for member in walk(body):
                if member.type == "init_declaration" and not extension:
                    functions.setdefault(text(type_name), []).append(parameters(member))
                elif member.type == "enum_entry":
                    for c in member.children:
                        if c.type == "simple_identifier":
                            cases.setdefault(text(type_name), set()).add(text(c).strip("`"))
    return functions, cases


def accepts(params, labels):
    """Whether a call with these labels matches a declaration's parameters."""
    i = 0
    for label in labels:
        while i < len(params) and params[i][0] != label and params[i][1]:
            i += 1
        if i == len(params) or params[i][0] != label:
            return False
        i += 1
    return all(has_default for _, has_default in params[i:])


def signature(params):
    """`(a:, b:=)`: labels, `=` marking a defaulted parameter."""
    return "(" + ", ".join((label or "_") + ":" + ("=" if d else "") for label, d in params) + ")"


def check_calls(path, tree, functions, cases):
    own = {text(n.child_by_field_name("name")) for n in walk(tree.root_node)
           if n.type in ("function_declaration", "class_declaration")
           and n.child_by_field_name("name") is not None}
    problems, checked = [], 0
    for node in walk(tree.root_node):
        if node.type == "call_expression":
            callee = node.children[0]
            if callee.type == "navigation_expression":
                suffix = callee.children[-1]
                name = text(suffix.children[-1]) if suffix.children else ""
            elif callee.type == "simple_identifier":
                name = text(callee)
            else:
                continue
            name = name.strip("`")
            if name not in functions or name in own:
                continue
            suffix = node.children[-1]
            arguments = next((c for c in suffix.children if c.type == "value_arguments"), None)
            args = [c for c in arguments.children if c.type == "value_argument"] if arguments else []
            labels = []
            for arg in args:
                label = next((c for c in arg.children if c.type == "value_argument_label"), None)
                labels.append(text(label) if label is not None else None)
            checked += 1
            if not any(accepts(p, labels) for p in functions[name]):
                wanted = " or ".join(signature(p) for p in functions[name])
                given = signature([(label, False) for label in labels])
                problems.append(
                    f"  line {node.start_point[0] + 1}: {name}{given} does not match {wanted}"
                )
    # Qualified enum cases: OutpostError.NotPermitted, TxOp.put, ...
    for enum, names in cases.items():
        for m in re.finditer(rf"\b{enum}\.(\w+)", path.read_text()):
            if m.group(1) not in names:
                problems.append(f"  {enum}.{m.group(1)} is not a case of {enum}")
    check(f"{path.name}: {checked} calls match the generated API", not problems, "\n".join(problems))


def check_package(pkg, generated, layers):
    import plistlib

    manifest = pkg / "Package.swift"
    tree = parse(manifest)
    source = manifest.read_text()
    paths = re.findall(r'path: "([^"]+)"', source)
    check(
        "Package.swift names a binary target, a library target and a test target",
        ".binaryTarget(" in source and ".target(" in source and ".testTarget(" in source and len(paths) == 3,
        source,
    )
    missing = [p for p in paths if not (pkg / p).exists()]
    check(f"the {len(paths)} target paths of Package.swift exist", not missing, f"  missing: {missing}")
    sources = pkg / "Sources/Outpost"
    expected = [generated / "Outpost.swift", *layers]
    same = all((sources / f.name).exists() and (sources / f.name).read_bytes() == f.read_bytes() for f in expected)
    check("Sources/Outpost holds the generated bindings and the async layer, as checked", same)
    xcf = next((pkg / p for p in paths if p.endswith(".xcframework")), None)
    problems = []
    try:
        info = plistlib.loads((xcf / "Info.plist").read_bytes())
        libraries = info["AvailableLibraries"]
        for lib in libraries:
            slot = xcf / lib["LibraryIdentifier"]
            for f in (slot / lib["LibraryPath"], slot / lib["HeadersPath"] / "OutpostFFI.h",
                      slot / lib["HeadersPath"] / "module.modulemap"):
                if not f.exists():
                    problems.append(f"  missing: {f}")
            modulemap = slot / lib["HeadersPath"] / "module.modulemap"
            if modulemap.exists() and "module OutpostFFI" not in modulemap.read_text():
                problems.append(f"  {modulemap} does not define module OutpostFFI")
        if info.get("CFBundlePackageType") != "XFWK" or not libraries:
            problems.append("  Info.plist is not an XCFramework's")
    except Exception as e:  # a missing or malformed plist is a failed check, with its reason
        problems.append(f"  {e!r}")
    check("the XCFramework's Info.plist names libraries that are there, with headers and module map",
          not problems, "\n".join(problems))


def main():
    generated, library, rest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:]
    layers, files, package = [], [], None
    while rest:
        arg = rest.pop(0)
        if arg == "--layer":
            layers.append(pathlib.Path(rest.pop(0)))
        elif arg == "--package":
            package = pathlib.Path(rest.pop(0))
        else:
            files.append(arg)
    check_header(generated / "OutpostFFI.h", library)
    bindings = generated / "Outpost.swift"
    functions, cases = api_of(parse(bindings))
    check(
        "the generated API has the expected entry points",
        {"open", "openBlocking", "subscribe", "shutdown", "transact", "status"} <= functions.keys()
        and "NotPermitted" in cases.get("OutpostError", set()),
        f"  functions: {sorted(functions)}\n  cases: {cases}",
    )
    for layer in layers:
        tree = parse(layer)
        check_calls(layer, tree, functions, cases)
        own, _ = api_of(tree)
        for name, declarations in own.items():
            functions.setdefault(name, []).extend(declarations)
    for f in map(pathlib.Path, files):
        check_calls(f, parse(f), functions, cases)
    if package is not None:
        check_package(package, generated, layers)
    passed, failed = results.count(True), results.count(False)
    print(f"swift: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

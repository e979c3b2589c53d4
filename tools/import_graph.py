#!/usr/bin/env python3
"""The import graph of crates/: which crate imports which (from Cargo.toml),
and, inside each crate, which source file names which module (`crate::X`,
`super::X`). Prints the crate arrows and lines, and every pair of files that
import each other; exits 1 if there is one or a crate arrow runs up the stack.

    python3 tools/import_graph.py
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "crates"
# Bottom to top: a crate may import only crates to its left.
ORDER = ["tch", "data", "model", "train", "run", "paper", "cli"]


def crate_deps():
    deps = {}
    for name in ORDER:
        text = (ROOT / name / "Cargo.toml").read_text()
        body = text.split("[dependencies]", 1)[1].split("\n[", 1)[0]
        deps[name] = sorted({m for m in re.findall(r"^bertfit-([a-z]+)\s*=", body, re.M)})
    return deps


def module_of(crate_src, path):
    rel = path.relative_to(crate_src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def reexports(src):
    """Names `lib.rs` (or `main.rs`) re-exports, by the module that defines them."""
    names = {}
    for top in ("lib.rs", "main.rs"):
        if (src / top).is_file():
            for m in re.finditer(r"pub use ([a-z_]+)::(\{[^}]*\}|\w+);", (src / top).read_text()):
                for name in re.findall(r"\w+", m.group(2)):
                    names[name] = m.group(1)
    return names


def file_imports(crate):
    src = ROOT / crate / "src"
    files = {module_of(src, p): p for p in src.rglob("*.rs")}
    names = reexports(src)
    edges = {}
    for module, path in files.items():
        text = re.sub(r"//.*", "", path.read_text())
        text = text.split("#[cfg(test)]")[0]
        targets = set()
        for m in re.finditer(r"\bcrate::\{([^}]*)\}", text):
            targets.update(names[n] for n in re.findall(r"\w+", m.group(1)) if n in names)
        for m in re.finditer(r"\bcrate::([A-Za-z_]+)\b", text):
            if m.group(1) in names:
                targets.add(names[m.group(1)])
        for m in re.finditer(r"\bcrate::([a-z_]+)(?:::([a-z_]+))?", text):
            for cand in (f"{m.group(1)}::{m.group(2)}" if m.group(2) else None, m.group(1)):
                if cand and cand in files:
                    targets.add(cand)
                    break
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        for m in re.finditer(r"\bsuper::([a-z_]+)", text):
            cand = f"{parent}::{m.group(1)}" if parent else m.group(1)
            if cand in files:
                targets.add(cand)
            elif parent in files:
                targets.add(parent)
        targets.discard(module)
        edges[module] = targets
    return edges


def main():
    bad = []
    deps = crate_deps()
    lines = {c: sum(len(p.read_text().splitlines()) for p in (ROOT / c / "src").rglob("*.rs")) for c in ORDER}
    print("crate | lines in src/ | imports")
    print("---|---|---")
    for c in ORDER:
        print(f"`{c}` | {lines[c]:,} | {', '.join(f'`{d}`' for d in deps[c]) or '-'}")
        for d in deps[c]:
            if ORDER.index(d) >= ORDER.index(c):
                bad.append(f"crate {c} imports {d}, which is not below it")
    for c in ORDER:
        edges = file_imports(c)
        for a, targets in edges.items():
            for b in targets:
                if a in edges.get(b, ()) and a < b:
                    bad.append(f"{c}: {a or 'lib'} and {b} import each other")
    for line in bad:
        print("problem:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

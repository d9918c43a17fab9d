"""The documentation: the API reference covers the public API and builds with warnings as
errors, every public name has a docstring that matches its signature, the README's links
resolve, and every python block of README.md and docs/*.md runs (tests/doc_blocks.py).

The public API is every module of fe_dist that defines ``__all__`` (and no part of whose path
starts with "_"), and the names in those ``__all__``; docs/api/*.md must render each such
module with a ``::: module`` line. Griffe (mkdocstrings' reader) reads the docstrings
statically, as the reference shows them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from doc_blocks import blocks, page_script

DOCS = REPO / "docs"
API = DOCS / "api"
# The guides whose python blocks run (README.md first); docs/api holds only ::: directives.
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
# How many python blocks of each page are marked fragments (not run). Changing a page's
# fragments means changing this table: a block cannot stop running unnoticed.
FRAGMENTS: dict[str, int] = {
    "README.md": 1,
    "docs/adaptive-batch.md": 1,
    "docs/launching.md": 1,
    "docs/training.md": 1,
}

needs_griffe = pytest.mark.skipif(importlib.util.find_spec("griffe") is None,
                                  reason="griffe (mkdocstrings-python) is not installed; "
                                         ".ci/setup installs it")
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _public_modules(package):
    """The griffe modules of fe_dist that define __all__ (the public modules)."""
    stack, found = [package], []
    while stack:
        module = stack.pop()
        if module.exports is not None:
            found.append(module)
        stack.extend(m for name, m in module.modules.items()
                     if not m.is_alias and not name.startswith("_"))
    return sorted(found, key=lambda m: m.path)


@pytest.fixture(scope="module")
def package():
    import griffe
    return griffe.load("fe_dist", search_paths=[str(REPO)], docstring_parser="google",
                       resolve_aliases=True, resolve_external=False)


@needs_griffe
def test_every_public_module_is_in_the_reference(package):
    rendered = set()
    for page in API.glob("*.md"):
        rendered |= set(re.findall(r"^:::\s*(\S+)", page.read_text(), re.M))
    public = {m.path for m in _public_modules(package)}
    assert public, "no module of fe_dist defines __all__"
    missing = sorted(public - rendered)
    assert not missing, (f"public modules (they define __all__) without a '::: module' line in "
                         f"docs/api/*.md: {missing}")
    # And nothing internal is rendered as if public: each ::: target is a public module or a
    # name one of them exports.
    modules = _public_modules(package)
    exported = {f"{m.path}.{n}" for m in modules for n in m.exports}
    exported |= {o.path for m in modules for n in m.exports
                 if (o := _export(package, m, n)) is not None}
    stray = sorted(t for t in rendered if t not in public and t not in exported)
    assert not stray, f"docs/api renders names that no __all__ exports: {stray}"


def _export(package, module, name: str):
    """The griffe object ``module.name`` is at run time. ``from fe_dist.build import build``
    makes ``fe_dist.build`` the function, but griffe keeps the submodule of that name under it:
    the import says which it is."""
    obj = module.members.get(name)
    imported = module.imports.get(name)
    if obj is not None and obj.is_module and imported and imported != obj.path:
        obj = _target(package, imported)
    return obj


def _target(package, path: str):
    obj = package
    try:
        for part in path.split(".")[1:]:
            obj = obj.members[part]
        return obj.final_target if obj.is_alias else obj
    except Exception:  # KeyError, or an alias griffe cannot resolve: counts as missing
        return None


def _documented_params(docstring) -> set[str]:
    names: set[str] = set()
    for section in docstring.parsed:
        if section.kind.value == "parameters":
            names |= {p.name.lstrip("*") for p in section.value}
    return names


def _signature_params(function) -> list[str]:
    return [p.name for p in function.parameters if p.name not in ("self", "cls")]


def _inherited_docstring(cls, name: str):
    """The docstring of ``name`` on a base class of ``cls``, as inspect.getdoc finds one for
    an override without its own (only bases inside fe_dist are seen)."""
    try:
        bases = cls.mro()
    except Exception:
        bases = []
    for base in bases:
        member = base.members.get(name)
        if member is not None and member.docstring:
            return member.docstring
    return None


def _problems(obj, owner=None) -> list[str]:
    """Why ``obj`` (a griffe object of the public API) is not documented, if it is not."""
    obj = obj.final_target if obj.is_alias else obj
    found: list[str] = []
    docstring = obj.docstring or (owner is not None and _inherited_docstring(owner, obj.name))
    if not docstring:
        return [f"{obj.path}: no docstring"]
    if obj.is_module:
        for name, member in obj.members.items():
            if not name.startswith("_") and not member.is_alias and (member.is_function
                                                                      or member.is_class):
                found += _problems(member)
        return found
    function = obj.members.get("__init__") if obj.is_class else obj if obj.is_function else None
    if function is not None and not function.is_alias:
        signature = _signature_params(function)
        documented = _documented_params(docstring)
        stale = sorted(documented - set(signature))
        if stale:
            found.append(f"{obj.path}: documents arguments it does not take: {stale} "
                         f"(signature: {signature})")
        variadic = {p.name for p in function.parameters if p.kind.value in
                    ("variadic positional", "variadic keyword")}
        undocumented = [p for p in signature if p not in documented and p not in variadic]
        if documented and undocumented:  # an Args section must be complete
            found.append(f"{obj.path}: its Args section leaves out {undocumented}")
    if obj.is_class:
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_function or (member.is_attribute and "property" in member.labels):
                found += _problems(member, owner=obj)
    return found


@needs_griffe
def test_every_public_name_has_a_docstring_matching_its_signature(package):
    problems: list[str] = []
    count = 0
    for module in _public_modules(package):
        for name in module.exports:
            obj = _export(package, module, name)
            assert obj is not None, f"{module.path}.__all__ names {name!r}, which it does not define"
            problems += _problems(obj)
            count += 1
    assert count > 50
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(not MKDOCS.exists(),
                    reason=f"mkdocs is not installed next to {sys.executable}; .ci/setup installs it")
def test_docs_build_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict``: a broken link, a page left out of the nav, a docstring
    argument that is not in the signature (griffe's warning) or an unresolved cross-reference
    fails."""
    done = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "api" / "fe_dist" / "index.html").exists()


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = target.split("#")[0]
        if not (REPO / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_fragment_counts_are_the_declared_ones():
    counts = {}
    for page in PAGES:
        skipped = [b for b in blocks(page) if b.language == "python" and b.fragment is not None]
        if skipped:
            counts[str(page.relative_to(REPO))] = len(skipped)
    assert counts == FRAGMENTS, ("the fragments (python blocks not run) changed; update "
                                 "FRAGMENTS in tests/test_docs.py if that is meant")


def test_fragments_said_to_be_copies_are_copies():
    """A fragment marked ``same as docs/x.md`` repeats a block that docs/x.md runs: it must be
    one of that page's runnable blocks, character for character."""
    checked = 0
    for page in PAGES:
        for block in blocks(page):
            reason = block.fragment or ""
            if not reason.startswith("same as "):
                continue
            other = REPO / reason.removeprefix("same as ").split()[0]
            assert other.exists(), f"{page.name}:{block.line}: {other} does not exist"
            run = [b.source for b in blocks(other) if b.fragment is None]
            assert block.source in run, (f"{page.name}:{block.line} is no longer the same as a "
                                         f"block that {other.name} runs")
            checked += 1
    assert checked >= 1  # the README's seed program


def test_figures_in_docs_are_the_benchmark_outputs():
    """docs/img holds copies of benchmark figures (mkdocs serves only docs/), named after their
    path with "/" as "__" (benchmarks__results__localhost__scaling.png): the same bytes, and
    every copy is shown on a page."""
    copies = sorted((DOCS / "img").glob("*"))
    assert copies
    shown = "".join(page.read_text() for page in PAGES)
    for copy in copies:
        source = REPO / copy.name.replace("__", "/")
        assert source.exists(), f"docs/img/{copy.name}: {source.relative_to(REPO)} is gone"
        assert copy.read_bytes() == source.read_bytes(), (
            f"docs/img/{copy.name} differs from {source.relative_to(REPO)}: copy it again")
        assert f"img/{copy.name}" in shown, f"docs/img/{copy.name} is on no page"


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_page_code_blocks_run(page, tmp_path):
    script, run, skipped = page_script(page)
    if not run:
        pytest.skip(f"{page.name} has no python block to run ({len(skipped)} fragments)")
    (tmp_path / "blocks.py").write_text(script)
    env = {**os.environ, "FE_DIST_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO), "FE_DIST_BACKEND": "local", "MPLBACKEND": "Agg"}
    for key in [k for k in env if k.startswith("HOROVOD_")]:
        del env[key]
    try:
        done = subprocess.run([sys.executable, str(tmp_path / "blocks.py")], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{page.name}: the blocks did not finish within 600 s\n{err.stdout}")
    assert done.returncode == 0, (f"{page.name}: a block failed (the last 'BLOCK <line> START' "
                                  f"names its line)\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    assert done.stdout.count(" OK\n") == len(run)


def test_block_markers_are_strict(tmp_path):
    """The runner's markers cannot hide a block by accident: a fragment needs a reason, a marker
    must sit right before a python block, and a replacement must match."""
    page = tmp_path / "page.md"
    page.write_text('<!-- test: replace "epochs=5" "epochs=1" -->\n```python\nx = dict(epochs=5)\n```\n'
                    "<!-- fragment: shown whole in launch/x.py -->\n\n```python\nundefined_name\n```\n")
    script, run, skipped = page_script(page)
    assert [b.line for b in run] == [2] and [b.line for b in skipped] == [7]
    assert "epochs=1" in run[0].runnable_source() and "undefined_name" not in script
    bad = {
        "<!-- fragment: -->\n```python\nx = 1\n```\n": "needs a reason",
        "<!-- fragment: why -->\ntext\n```python\nx = 1\n```\n": "right before",
        "<!-- fragment: why -->\n```bash\nls\n```\n": "only python blocks run",
        "<!-- fragmnet: why -->\n```python\nx = 1\n```\n": "unknown test marker",
        "```python\nx = 1\n```\n<!-- fragment: why -->\n": "after the last block",
    }
    for text, message in bad.items():
        page.write_text(text)
        with pytest.raises(ValueError, match=message):
            page_script(page)
    page.write_text('<!-- test: replace "epochs=9" "epochs=1" -->\n```python\nx = dict(epochs=5)\n```\n')
    with pytest.raises(ValueError, match="does not occur"):
        page_script(page)

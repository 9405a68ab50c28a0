"""Every public function of the public API modules documents its parameters and return value in numpy
style (the idea of scanpy's ``tests/test_package_structure.py``)."""
import importlib
import inspect
import re

import pytest

MODULES = ["omics_cl.tl", "omics_cl.pp", "omics_cl.pl", "omics_cl.get", "omics_cl.io", "omics_cl.datasets"]


def _public_functions():
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name)
            if inspect.isfunction(obj) and obj.__module__.startswith("omics_cl"):
                yield pytest.param(obj, id=f"{mod_name}.{name}")


def _sections(doc: str) -> dict[str, list[str]]:
    """Numpy-style sections (a title line underlined with dashes) -> their lines."""
    lines = doc.splitlines()
    out, current = {}, None
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line.strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip()):
            current = out.setdefault(line.strip(), [])
        elif current is not None and not re.fullmatch(r"-{3,}", line.strip()):
            current.append(line)
    return out


def _documented_names(section: list[str]) -> set[str]:
    """Entry names: the unindented lines of a section (``name``, ``name : type`` or ``a, b : type``)."""
    names = set()
    for line in section:
        if line.strip() and not line[0].isspace():
            names.update(n.strip() for n in line.split(" : ")[0].split(","))
    return names


def _expected_names(func) -> set[str]:
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return {prefix.get(p.kind, "") + p.name for p in inspect.signature(func).parameters.values()
            if p.name not in ("self", "cls")}


def test_public_functions_found():
    names = {p.id for p in _public_functions()}
    assert {"omics_cl.tl.transfer_labels", "omics_cl.pp.gene_activity", "omics_cl.io.read_fragments",
            "omics_cl.datasets.load", "omics_cl.get.rep", "omics_cl.pl.umap"} <= names


@pytest.mark.parametrize("func", _public_functions())
def test_parameters_section(func):
    expected = _expected_names(func)
    sections = _sections(inspect.getdoc(func) or "")
    if not expected:
        assert "Parameters" not in sections, "Parameters section on a function without parameters"
        return
    assert "Parameters" in sections, "no 'Parameters' section"
    documented = _documented_names(sections["Parameters"])
    assert not expected - documented, f"undocumented parameters: {sorted(expected - documented)}"
    assert not documented - expected, f"documented parameters not in the signature: {sorted(documented - expected)}"


@pytest.mark.parametrize("func", _public_functions())
def test_returns_section(func):
    returns_none = inspect.signature(func).return_annotation in (None, "None")
    sections = _sections(inspect.getdoc(func) or "")
    if returns_none:
        assert "Returns" not in sections, "Returns section on a function annotated -> None"
    else:
        assert "Returns" in sections and _documented_names(sections["Returns"]), "no 'Returns' entry"

"""The notebooks against the package's API, without running them (each takes minutes; README, Method 1): every code
cell parses, every ``omics_cl`` name they use exists, and every call of an ``omics_cl`` function passes arguments its
signature takes."""
import ast
import importlib
import inspect
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def package_names(tree: ast.Module) -> dict[str, object]:
    """Names bound by ``import omics_cl as X`` and ``from omics_cl[.sub] import Y`` to the objects they name."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "omics_cl":  # ``import omics_cl.tl`` binds omics_cl; ``... as X`` binds the submodule
                    bound[alias.asname or top] = importlib.import_module(alias.name if alias.asname else top)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "omics_cl":
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = alias.name
                bound[alias.asname or name] = (getattr(module, name) if hasattr(module, name)
                                               else importlib.import_module(f"{node.module}.{name}"))
    return bound


def api_errors(source: str, where: str) -> tuple[list[str], int]:
    """What in ``source`` does not match the package: names that do not exist and calls its signatures refuse;
    with the number of package calls checked."""
    tree = ast.parse(source, filename=where)
    bound, errors, calls = package_names(tree), [], 0

    def resolved(node: ast.expr):
        """The object an attribute chain such as ``ocl.tl.cluster`` names; None when not rooted in the package."""
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute) and (owner := resolved(node.value)) is not None:
            if not hasattr(owner, node.attr):
                errors.append(f"{where}: {ast.unparse(node)} does not exist")
            return getattr(owner, node.attr, None)
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and callable(target := resolved(node.func)):
            calls += 1
            try:
                inspect.signature(target).bind(*[None] * len(node.args),
                                               **{k.arg: None for k in node.keywords if k.arg is not None})
            except TypeError as err:
                errors.append(f"{where}: {ast.unparse(node)}: {err}")
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
            resolved(node)
    return sorted(set(errors)), calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_the_api_as_it_is(path):
    errors, calls = api_errors("\n".join(code_cells(path)), path.name)
    assert errors == [] and calls >= 5, (errors, calls)


def test_a_missing_name_and_a_renamed_argument_are_caught():
    errors, calls = api_errors("import omics_cl as ocl\nfrom omics_cl import pl\npl.umap(adata, 'X', color=['a'], sead=0)\n"
                               "ocl.pl.umapp(adata)\nocl.tl.cluster(adata, method='pca')", "snippet")
    assert calls == 2 and len(errors) == 2, errors
    assert "ocl.pl.umapp does not exist" in errors[0] and "unexpected keyword argument 'sead'" in errors[1]


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["clustering_quickstart", "label_transfer", "paired_integration"]

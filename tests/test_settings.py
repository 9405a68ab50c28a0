"""omics_cl.settings.compilation_cache: jax's persistent cache, in fresh processes (the suite's own is on)."""
import os
import subprocess
import sys

from omics_cl import settings

PROGRAM = """
import sys
from omics_cl import settings
path = settings.compilation_cache(sys.argv[1] if len(sys.argv) > 1 else None)
import jax, jax.numpy as jnp
print(path, float(jax.jit(lambda x: (x * 2 + 1).sum())(jnp.arange(3.0))))
"""


def run(env: dict, *args: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JAX_")}, **env}  # not the suite's cache
    out = subprocess.run([sys.executable, "-c", PROGRAM, *args], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_programs_are_kept_and_reused(tmp_path):
    first = run({}, str(tmp_path / "jax"))
    assert first == [str(tmp_path / "jax"), "9.0"]
    kept = sorted(p.name for p in (tmp_path / "jax").iterdir())
    assert kept  # the jitted program is on disk
    assert run({}, str(tmp_path / "jax")) == first  # loaded, same result
    assert sorted(p.name for p in (tmp_path / "jax").iterdir()) == kept  # nothing compiled anew


def test_default_directory_and_env(tmp_path, monkeypatch):
    """compilation_cache's directory, resolved in this process (a fresh process uses what it resolves: above)."""
    monkeypatch.setenv("OMICS_CL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(settings.COMPILATION_CACHE_VAR, raising=False)
    assert settings.compilation_cache_directory() == tmp_path / "jax"
    for on in ("1", "true", "YES"):
        monkeypatch.setenv(settings.COMPILATION_CACHE_VAR, on)
        assert settings.compilation_cache_directory() == tmp_path / "jax"
    monkeypatch.setenv(settings.COMPILATION_CACHE_VAR, str(tmp_path / "elsewhere"))
    assert settings.compilation_cache_directory() == tmp_path / "elsewhere"
    assert settings.compilation_cache_directory(tmp_path / "given") == tmp_path / "given"


def test_a_cache_jax_already_has_is_left_alone(tmp_path):
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "theirs")}
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path / "ours")], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "None" and not (tmp_path / "ours").exists()


def test_switch(monkeypatch):
    for value, wanted in (("", True), ("1", True), ("0", False), ("false", False), ("/some/dir", True)):
        monkeypatch.setenv(settings.COMPILATION_CACHE_VAR, value)
        assert settings.compilation_cache_wanted() is wanted

"""Two processes on localhost (``jax.distributed``, one CPU device each) train through ``fit``'s device-resident
epochs on a mesh spanning both, to the result of one process with two devices."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    port, rank = sys.argv[1], int(sys.argv[2])
    if rank >= 0:
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=rank)
    assert jax.device_count() == 2 and jax.process_count() == (2 if rank >= 0 else 1)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    try:  # the capability: a collective across the processes
        x = jax.device_put(np.arange(8.0), NamedSharding(mesh, PartitionSpec("data")))
        total = float(jax.jit(lambda v: v.sum(), out_shardings=NamedSharding(mesh, PartitionSpec()))(x))
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(NO_COLLECTIVES)
    assert total == 28.0, total
    from flax import nnx
    from test_epochs import features, train
    from omics_cl.data.sources import dense_source
    result = train(dense_source(features(203)), 40, "always", epochs=4, early_stopping=True)
    leaves = [np.asarray(v) for v in jax.tree.leaves(nnx.state(result.model))]
    np.savez(sys.argv[3], loss=result.history["loss"], val_loss=result.history["val_loss"], *leaves)
""").replace("NO_COLLECTIVES", "77")
NO_COLLECTIVES = 77


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: str, runs: list[tuple[int, Path, dict]]) -> list[subprocess.CompletedProcess]:
    """Run ``script`` once per ``(rank, output, env)`` at the same time (rank -1: without jax.distributed)."""
    port = str(free_port())
    procs = [subprocess.Popen([sys.executable, "-c", script, port, str(rank), str(out)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for rank, out, env in runs]
    try:
        return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return dict(env, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]), **extra)


def test_two_processes_train_to_the_result_of_one(tmp_path):
    outputs = [tmp_path / "rank0.npz", tmp_path / "rank1.npz", tmp_path / "single.npz"]
    runs = launch(SCRIPT, [(0, outputs[0], environment()), (1, outputs[1], environment()),
                           (-1, outputs[2], environment(XLA_FLAGS="--xla_force_host_platform_device_count=2"))])
    if runs[0].returncode == NO_COLLECTIVES and runs[1].returncode == NO_COLLECTIVES:
        pytest.skip("this jax's CPU backend cannot run a cross-process collective: "
                    + runs[0].stderr.strip().splitlines()[-1])
    assert all(p.returncode == 0 for p in runs), "\n".join(p.stderr[-3000:] for p in runs)
    one = np.load(outputs[2])
    for path in outputs[:2]:
        two = np.load(path)
        assert one.files == two.files and len(one["loss"]) == 4
        for key in one.files:
            np.testing.assert_array_equal(two[key], one[key])

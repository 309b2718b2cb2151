"""TensorFlow's CUDA probing noise is filtered only where no NVIDIA GPU is expected."""

import os
import subprocess
import sys

import pytest

from tgmatl.tfsetup import CPU_NOISE, filtered_stderr, gpu_expected, nvidia_device_nodes


@pytest.mark.parametrize("nodes, visible, expected", [
    ([], None, False),
    (["nvidiactl", "nvidia-uvm"], None, False),  # driver control nodes, no GPU
    (["nvidia0", "nvidiactl"], None, True),
    (["nvidia0"], "0", True),
    (["nvidia0"], "", False),  # every device hidden on purpose
    (["nvidia0"], "-1", False),
])
def test_gpu_expected_from_device_nodes_and_cuda_visible_devices(tmp_path, nodes, visible,
                                                                 expected):
    for n in nodes:
        (tmp_path / n).touch()
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert gpu_expected(str(tmp_path), env) is expected
    assert nvidia_device_nodes(str(tmp_path)) == [str(tmp_path / n) for n in nodes
                                                  if n[6:].isdigit()]


def test_filtered_stderr_drops_only_the_listed_lines(capfd):
    with filtered_stderr():
        # written straight to fd 2, as TensorFlow's C++ logging does
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
                    b"will not be used.\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"E0000 some_op.cc:1] a real error\n")
        print("python warning", file=sys.stderr)
    err = capfd.readouterr().err
    # (order aside: under pytest sys.stderr is not fd 2)
    assert sorted(err.splitlines()) == ["E0000 some_op.cc:1] a real error", "python warning"]
    assert all(n not in err for n in CPU_NOISE)


@pytest.mark.slow
def test_start_tensorflow_is_quiet_on_a_cpu_machine(repo_root):
    if gpu_expected():
        pytest.skip("an NVIDIA GPU is present: nothing is filtered here")
    code = ("from tgmatl.tfsetup import start_tensorflow\n"
            "tf = start_tensorflow()\n"
            "print(len(tf.config.list_physical_devices('GPU')), float(tf.reduce_sum([1.0, 2.0])))")
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "3.0"]
    assert r.stderr == "", r.stderr

"""Tests for magnets_tf.xla_cpu: when the tools ask XLA for 512-bit vectors."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from magnets_tf import xla_cpu

ROOT = Path(__file__).resolve().parents[1]
AVX512_FLAGS = "flags\t\t: fpu sse2 avx2 avx512f avx512dq fma\n"
AVX2_FLAGS = "flags\t\t: fpu sse2 avx2 fma avx512_fake_name\n"


def _cpuinfo(tmp_path, flags_line):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: test cpu\n" + flags_line)
    return str(path)


def test_avx512_host_gets_512_bit_vectors(tmp_path):
    env = {}
    assert xla_cpu.prefer_host_vector_width(env, _cpuinfo(tmp_path, AVX512_FLAGS)) == 512
    assert env["XLA_FLAGS"] == "--xla_cpu_prefer_vector_width=512"


def test_other_xla_flags_are_kept(tmp_path):
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}
    xla_cpu.prefer_host_vector_width(env, _cpuinfo(tmp_path, AVX512_FLAGS))
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/dump --xla_cpu_prefer_vector_width=512"


def test_host_without_avx512_keeps_xla_default(tmp_path):
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}
    assert xla_cpu.prefer_host_vector_width(env, _cpuinfo(tmp_path, AVX2_FLAGS)) is None
    assert env == {"XLA_FLAGS": "--xla_dump_to=/tmp/dump"}


def test_missing_cpuinfo_keeps_xla_default(tmp_path):
    env = {}
    assert xla_cpu.prefer_host_vector_width(env, str(tmp_path / "absent")) is None
    assert env == {}


def test_users_own_width_wins(tmp_path):
    env = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
    assert xla_cpu.prefer_host_vector_width(env, _cpuinfo(tmp_path, AVX512_FLAGS)) == 256
    assert env["XLA_FLAGS"] == "--xla_cpu_prefer_vector_width=256"


@pytest.mark.parametrize("tool", ["benchmark", "sample", "evaluate", "sweep_schedules",
                                  "frame_prediction"])
def test_decoding_tools_ask_for_it_first_thing_in_main(tool):
    """Before any XLA compile (XLA reads its flags once); tests/tools/benchmark_test.py
    checks the effect end to end."""
    source = (ROOT / "tools" / f"{tool}.py").read_text()
    main = ast.parse(source).body
    main = next(node for node in main if isinstance(node, ast.FunctionDef) and node.name == "main")
    body = [node for node in main.body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert "xla_cpu.prefer_host_vector_width()" in ast.unparse(body[0]), tool


def test_flag_takes_effect_when_set_after_tensorflow_import(tmp_path):
    """XLA parses XLA_FLAGS at the first compile, not at import: setting it in main works."""
    dump = tmp_path / "dump"
    code = (
        "import os, tensorflow as tf\n"
        f"os.environ['XLA_FLAGS'] = '--xla_dump_to={dump}'\n"
        "tf.function(lambda x: x * 2, jit_compile=True)(tf.constant(1.0)).numpy()\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert any(dump.iterdir())

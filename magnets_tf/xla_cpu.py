"""XLA CPU code generation for this host: 512-bit vectors where the CPU has AVX-512.

XLA's CPU backend emits 256-bit vector code by default, even on AVX-512 hosts (a guard
against the clock drop of older Intel parts when 512-bit units wake up). On the 2-core
AVX-512 machine of docs/decoding.md, 512-bit code ran a transformer layer 3-5% faster at
full head width and 7-15% faster at the narrow widths of the small sub-models, so the
tools ask for it. XLA reads XLA_FLAGS once, at the first compile of the process: call
`prefer_host_vector_width` before that (tools do it first thing in main). A width the
user already put in XLA_FLAGS is left alone, so `XLA_FLAGS=--xla_cpu_prefer_vector_width=256`
restores XLA's default.
"""
import os
import re

WIDTH_FLAG = "--xla_cpu_prefer_vector_width"
_WIDTH_PATTERN = re.compile(r"--xla_cpu_prefer_vector_width=(\d+)")


def host_has_avx512(cpuinfo_path="/proc/cpuinfo"):
    """True when the CPU flags list avx512f (False where /proc/cpuinfo is missing)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split(":", 1)[1].split()
    except OSError:
        return False
    return False


def vector_width(environ=None):
    """The vector width XLA_FLAGS asks for, or None when it leaves XLA's default."""
    environ = os.environ if environ is None else environ
    found = _WIDTH_PATTERN.findall(environ.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else None


def prefer_host_vector_width(environ=None, cpuinfo_path="/proc/cpuinfo"):
    """Adds `--xla_cpu_prefer_vector_width=512` to XLA_FLAGS on AVX-512 hosts.

    Returns the width XLA_FLAGS now asks for (None: XLA's default, 256 bits)."""
    environ = os.environ if environ is None else environ
    chosen = vector_width(environ)
    if chosen is None and host_has_avx512(cpuinfo_path):
        environ["XLA_FLAGS"] = " ".join(
            part for part in (environ.get("XLA_FLAGS", ""), f"{WIDTH_FLAG}=512") if part)
        chosen = 512
    return chosen

"""host_memory: large blocks freed on a worker thread are reused, not faulted in again.

Each case runs in its own interpreter: the allocator settings are process-wide and permanent.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the allocator settings are glibc's (Linux)")

# Allocates, touches and frees a 300 MB block (larger than a secondary arena's 64 MB heaps, like
# XLA's step temporaries) five times on one worker thread, as XLA's runtime does, and prints
# whether the settings took effect and the minor page faults of the last four rounds.
_PROBE = textwrap.dedent("""
    import ctypes, resource, sys, threading
    from amfi_jax import host_memory
    configured = host_memory.reuse_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 300 << 20
    faults = []
    def rounds():
      for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    worker = threading.Thread(target=rounds)
    worker.start(); worker.join()
    print(configured, sum(faults[1:]))
""")


def _probe(**env) -> tuple[bool, int]:
  out = subprocess.run([sys.executable, "-c", _PROBE], env=dict(os.environ, **env), check=True,
                       capture_output=True, text=True).stdout.split()
  return out[0] == "True", int(out[1])


def test_freed_blocks_are_reused_without_page_faults():
  configured, faults = _probe()
  assert configured
  # Four rounds of 300 MB would be ~300,000 faults of 4 KiB pages if each block were new.
  assert faults < 1_000


def test_system_setting_keeps_the_c_library_defaults():
  configured, faults = _probe(AMFI_JAX_MALLOC="system")
  assert not configured
  assert faults > 100_000  # glibc maps and unmaps each block: every round faults it in again


def test_a_misspelt_setting_is_a_user_error_naming_the_variable(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "amfi_jax.main", "--config=configs/fusion.py:demo",
       f"--workdir={tmp_path / 'w'}"], env=dict(os.environ, AMFI_JAX_MALLOC="sytem"),
      capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  assert result.returncode == 2
  assert "AMFI_JAX_MALLOC='sytem'" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "w").exists()  # refused before any work

"""Build the Cython core: every ``src/*.pyx`` becomes ``bpcore.<name>``.

Metadata lives in pyproject.toml; this file only builds extensions.

Environment switches:
  BPCORE_DEBUG=1   rebuild with bounds, wraparound and initialisation checks on
                   (and -O0 -g), to catch out-of-bounds memory access in kernels.
  BPCORE_NATIVE=1  add -march=native (not portable; off by default).
  BPCORE_SANITIZE=1  build with AddressSanitizer and UndefinedBehaviorSanitizer
                   (-O1 -g); run with the ASan runtime preloaded (CONTRIBUTING.md).
"""
import os
import sys
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
SOURCES = sorted((HERE / "src").glob("*.pyx"))
if not SOURCES:
    raise SystemExit(
        "setup.py: no Cython sources found in src/*.pyx; "
        "an sdist built without MANIFEST.in would produce a wheel with no core"
    )

DEBUG = os.environ.get("BPCORE_DEBUG", "0") not in ("", "0")
NATIVE = os.environ.get("BPCORE_NATIVE", "0") not in ("", "0")

# The only place compiler directives are set (no `# cython:` header lines in src/,
# which would silently override the debug build).
DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "nonecheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

# -fno-math-errno: sqrt and friends need not set errno, so their loops vectorise
# (bpcore never reads errno; NaN/inf are checked explicitly where they matter).
if DEBUG:
    COMPILE_ARGS = ["-O0", "-g", "-fno-math-errno"]
else:
    COMPILE_ARGS = ["-O3", "-fno-math-errno"]
if NATIVE:
    COMPILE_ARGS.append("-march=native")
# the helper thread of src/_pool.h (older glibc keeps pthreads in its own library)
LINK_ARGS = []
if sys.platform.startswith("linux"):
    COMPILE_ARGS.append("-pthread")
    LINK_ARGS.append("-pthread")
# --- sanitizer build (BPCORE_SANITIZE=1): its own copy of the source, never a release
if os.environ.get("BPCORE_SANITIZE", "0") not in ("", "0"):
    COMPILE_ARGS += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                     "-O1", "-g"]     # (the last -O wins)
    LINK_ARGS += ["-fsanitize=address,undefined"]
# --- end of the sanitizer build

extensions = [
    Extension(
        f"bpcore.{path.stem}",
        [str(path.relative_to(HERE))],
        include_dirs=["src", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        depends=[str(p.relative_to(HERE)) for pattern in ("*.h", "*.pxd", "*.pxi")
                 for p in (HERE / "src").glob(pattern)],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
        libraries=["m"],
    )
    for path in SOURCES
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        # bpcore/include holds bpcore/kernels.pxd, the public declarations that
        # src/kernels.pyx implements (shipped, for other extensions: get_include())
        include_path=["src", "bpcore/include"],
        force=DEBUG,
    )
)

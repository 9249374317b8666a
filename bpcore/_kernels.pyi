# Stub of src/_kernels_module.c: the extension holding bpcore's C kernels.
from typing import Any

def build_info() -> dict[str, Any]: ...

"""bpcore next to other libraries.

- ``bpcore.interop.torch``: models to and from ``torch.nn.Sequential``, torch-named
  state dicts, and a bpcore model as a block of a torch graph (torch is optional and
  imported only when one of its functions is called);
- ``bpcore.interop.safetensors``: models to and from ``.safetensors`` files with
  torch's names and layouts, the architecture in the metadata (numpy only);
- DLPack needs no helper: ``model.params`` and ``model.grads`` are numpy arrays, so
  ``torch.from_dlpack(model.params)`` or ``jax.dlpack.from_dlpack(model.params)``
  share their memory (see docs/interop.md).

Importing this package imports neither torch nor any of its submodules.
"""

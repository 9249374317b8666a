"""The fuzz corpus (``tests/fuzz_corpus/``, written by its ``make_corpus.py``) replayed
on every run, without hypothesis: files that once broke, or nearly broke, a reader.
``ok-*`` files load; ``bad-*`` files are refused with their reader's one error
(``CheckpointError`` without a chained traceback for ``.bpc``/``.safetensors``, the
CLI's one-line ``UsageError`` naming the file for ``.npz``/``.csv``). The
hypothesis harnesses that mutate these seeds are in ``test_fuzz.py``."""
import os

import pytest

import bpcore as bp
from bpcore.checkpoint import CheckpointError
from bpcore.cli.data import UsageError, _load_csv, _load_npz
from bpcore.interop.safetensors import load_safetensors

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_corpus")


def corpus(prefix="", suffix=""):
    return sorted(name for name in os.listdir(CORPUS)
                  if name.startswith(prefix) and name.endswith(suffix))


def seed_bytes(name):
    with open(os.path.join(CORPUS, name), "rb") as file:
        return file.read()


def assert_not_chained(error):
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


LOADERS = {".bpc": bp.load_checkpoint, ".safetensors": load_safetensors,
           ".npz": lambda path: _load_npz(path, need_target=True),
           ".csv": lambda path: _load_csv(path, None, None, True, None)}
ERRORS = {".bpc": CheckpointError, ".safetensors": CheckpointError, ".npz": UsageError,
          ".csv": UsageError}


def read(data, suffix, folder):
    """Write ``data`` to a file and read it; the result, or the reader's own error
    (any other exception fails the test)."""
    path = os.path.join(folder, "fuzzed" + suffix)
    with open(path, "wb") as file:
        file.write(data)
    try:
        return LOADERS[suffix](path)
    except ERRORS[suffix] as error:
        if isinstance(error, CheckpointError):
            assert_not_chained(error)
            assert error.path == path
        else:
            assert path in str(error) and "\n" not in str(error)
        return error


@pytest.mark.parametrize("name", corpus("ok-"))
def test_corpus_ok_files_load(name, tmp_path):
    suffix = os.path.splitext(name)[1]
    result = read(seed_bytes(name), suffix, str(tmp_path))
    assert not isinstance(result, Exception), result


@pytest.mark.parametrize("name", corpus("bad-"))
def test_corpus_bad_files_are_refused_with_one_error(name, tmp_path):
    suffix = os.path.splitext(name)[1]
    result = read(seed_bytes(name), suffix, str(tmp_path))
    assert isinstance(result, ERRORS[suffix]), result


def test_corpus_is_small_and_covers_every_reader():
    names = corpus("ok-") + corpus("bad-")
    assert sum(os.path.getsize(os.path.join(CORPUS, n)) for n in names) < 64 * 1024
    for suffix in LOADERS:
        assert corpus("ok-", suffix) and corpus("bad-", suffix), suffix

"""gzip layers: ISA-L's reader when `isal` is installed, the standard library's otherwise.

Both must read the same layers to the same members and fail on the same bad layers with
`LayerError`; the fallback is exercised in a child interpreter where `isal` cannot be
imported.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shifter.convert import inflate
from shifter.convert.layers import LayerError, read_headers
from shifter.ocibuild.layer import Compression, Dir, File, Symlink, build_layer

ENTRIES = [
    Dir("d"),
    *(File(f"d/f{n}", bytes([n]) * (n * 977 % 70000)) for n in range(40)),
    Symlink("d/s", "f1"),
]


def gzip_layer(tmp_path: Path) -> Path:
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(build_layer(ENTRIES, Compression.GZIP).blob)
    return path


def test_isal_is_the_reader_here() -> None:
    # pyproject.toml depends on isal: a test environment without it measures the wrong thing.
    assert inflate.INFLATER == "isal.igzip"


def test_the_reader_inflates_what_gzip_wrote(tmp_path: Path) -> None:
    plain = build_layer(ENTRIES, Compression.NONE).blob
    path = tmp_path / "layer.gz"
    # Two members, as `cat a.gz b.gz` makes: both readers must go on past the first.
    path.write_bytes(gzip.compress(plain[:5000]) + gzip.compress(plain[5000:], 1))
    with path.open("rb") as raw, inflate.open_gzip(raw) as stream:
        assert stream.read() == plain


def test_both_readers_give_the_same_headers(tmp_path: Path) -> None:
    layer = gzip_layer(tmp_path)
    ours = [tuple(h) for h in read_headers(layer)]
    assert len(ours) == len(ENTRIES)
    stdlib = _in_child_without_isal(
        f"""
        from pathlib import Path
        from shifter.convert import inflate
        from shifter.convert.layers import read_headers
        assert inflate.INFLATER == "gzip", inflate.INFLATER
        print(repr([tuple(h) for h in read_headers(Path({str(layer)!r}))]))
        """
    )
    # Kind prints as <Kind.DIR: 'dir'>; compare the text of both lists.
    assert stdlib.strip() == repr(ours)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("corrupt", "not a readable tar archive"),
        ("truncated", "not a readable tar archive"),
        ("trailing garbage", "not a readable tar archive"),
    ],
)
def test_a_bad_gzip_layer_is_a_layer_error_with_either_reader(
    tmp_path: Path, damage: str, expected: str
) -> None:
    blob = bytearray(gzip_layer(tmp_path).read_bytes())
    if damage == "corrupt":
        blob[40:400] = bytes(360)
    elif damage == "truncated":
        del blob[len(blob) // 2 :]
    else:
        blob += b"not gzip"
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(blob))
    with pytest.raises(LayerError, match=expected):
        list(read_headers(bad))
    outcome = _in_child_without_isal(
        f"""
        from pathlib import Path
        from shifter.convert.layers import LayerError, read_headers
        try:
            list(read_headers(Path({str(bad)!r})))
        except LayerError as exc:
            print("LayerError:", exc)
        """
    )
    assert outcome.startswith("LayerError:") and expected in outcome


def _in_child_without_isal(code: str) -> str:
    """Run `code` in a child interpreter where `import isal` fails; its stdout."""
    prelude = "import sys\nsys.modules['isal'] = None  # makes `import isal` raise ImportError\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout

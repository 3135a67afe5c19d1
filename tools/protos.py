"""Lint the contracts, build Envoy's descriptor set and generate the Python stubs.

Usage: ``python -m tools.protos [generate|check|descriptor|breaking|release]``

- ``generate`` (default): buf lint, then write the Python stubs to libs/gen/.
- ``check``: buf lint, then fail when the committed stubs differ from freshly generated ones.
- ``descriptor``: write the descriptor set Envoy's gRPC-JSON transcoder reads.
- ``breaking``: fail when the contracts break wire or JSON compatibility with the
  released contract in protos/released/image.json (``buf breaking``, WIRE_JSON).
- ``release``: record the current contracts as the released contract.

Everything runs offline: buf resolves ``google/api`` imports from copies taken from the
installed googleapis-common-protos wheel, and grpc_tools bundles protoc.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = PROTOS / "third_party"
GEN = ROOT / "libs" / "gen"
DESCRIPTOR = ROOT / ".build" / "aigateway.binpb"
GOOGLE_API_FILES = ("annotations.proto", "http.proto", "httpbody.proto")
GOOGLE_RPC_FILES = ("status.proto",)
# The contract clients were given. A change that breaks it needs a new package version
# (aigateway.<area>.v2) served beside the old one, not an edit of v1.
RELEASED_IMAGE = PROTOS / "released" / "image.json"
BREAKING_CONFIG = '{"version": "v2", "breaking": {"use": ["WIRE_JSON"]}}'


def sync_third_party() -> None:
    """Copy the google/api and google/rpc protos from the installed googleapis-common-protos wheel."""
    import google.api
    import google.rpc

    for package, names in ((google.api, GOOGLE_API_FILES), (google.rpc, GOOGLE_RPC_FILES)):
        source = Path(next(iter(package.__path__)))
        target = THIRD_PARTY / "google" / source.name
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(source / name, target / name)


def _buf() -> str:
    venv_buf = Path(sys.executable).with_name("buf")
    found = str(venv_buf) if venv_buf.exists() else shutil.which("buf")
    if found is None:
        raise SystemExit("buf not found: install the dev extra (`make install`), which brings buf-bin")
    return found


def lint() -> None:
    """Run buf lint (STANDARD plus COMMENTS) on the project's module."""
    subprocess.run([_buf(), "lint"], cwd=PROTOS, check=True)


def build_descriptor(path: Path = DESCRIPTOR) -> Path:
    """Write a descriptor set with imports and source info, as Envoy's transcoder needs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_buf(), "build", "--as-file-descriptor-set", "-o", str(path)], cwd=PROTOS, check=True
    )
    return path


def breaking() -> int:
    """Return buf breaking's exit code against the released contract (0 when compatible)."""
    if not RELEASED_IMAGE.exists():
        print(f"no released contract at {RELEASED_IMAGE}: run `python -m tools.protos release`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        # Both sides as single images: the workspace has a second module (third_party)
        # that buf would otherwise compare as an image of its own.
        current = Path(scratch) / "current.json"
        subprocess.run([_buf(), "build", "--exclude-source-info", "-o", str(current)], cwd=PROTOS, check=True)
        return subprocess.run(
            [_buf(), "breaking", str(current), "--against", str(RELEASED_IMAGE), "--config", BREAKING_CONFIG],
            cwd=PROTOS, check=False,
        ).returncode


def release() -> Path:
    """Write the current contracts (without source info, to keep the file small) as released."""
    RELEASED_IMAGE.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_buf(), "build", "--exclude-source-info", "-o", str(RELEASED_IMAGE.relative_to(PROTOS))],
        cwd=PROTOS, check=True,
    )
    return RELEASED_IMAGE


def generate(out_dir: Path) -> None:
    """Generate Python message, gRPC and type-stub modules for every aigateway proto."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "aigateway").rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    argv = [
        "protoc", f"-I{PROTOS}", f"-I{THIRD_PARTY}", f"-I{include}",
        f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(argv) != 0:
        raise SystemExit("protoc failed: see the messages above")
    for directory in [out_dir / "aigateway", *(out_dir / "aigateway").rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()


def check() -> int:
    """Return 1 and list the files when libs/gen differs from freshly generated stubs."""
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        generate(fresh)
        stale = _differences(fresh / "aigateway", GEN / "aigateway")
    if stale:
        print("generated stubs are stale; run `make protos` and commit libs/gen:", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


def _differences(fresh: Path, committed: Path) -> list[str]:
    names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    names |= {
        p.relative_to(committed)
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    } if committed.exists() else set()
    stale = []
    for name in sorted(names):
        a, b = fresh / name, committed / name
        if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
            stale.append(str(name))
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "action", nargs="?", default="generate", choices=["generate", "check", "descriptor", "breaking", "release"]
    )
    args = parser.parse_args()

    sync_third_party()
    if args.action == "descriptor":
        print(build_descriptor())
        return 0
    if args.action == "release":
        print(release())
        return 0
    lint()
    if args.action == "check":
        return check()
    if args.action == "breaking":
        return breaking()
    shutil.rmtree(GEN / "aigateway", ignore_errors=True)
    generate(GEN)
    build_descriptor()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

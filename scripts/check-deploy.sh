#!/usr/bin/env bash
# Checks the deployment artifacts (deploy/, helm/, terraform/) with the tools platform
# engineers use, installing them first (no Docker engine or Kubernetes cluster needed):
#   - the image's binary, built by deploy/build.sh exactly as the Dockerfile's build stage
#     does (release, --locked), then started on embedded defaults and used by kcat, and
#     stopped with SIGTERM;
#   - Helm (built from its Go module) renders the chart for the default values and every
#     helm/silt/ci/*.yaml set; kubernetes-validate (PyPI, ships the Kubernetes schemas) and the
#     CRDs of the Prometheus Operator, KEDA and cert-manager (from their Go modules) validate
#     every rendered object; invalid value sets must be refused by values.schema.json;
#   - the Compose file and its etcd-TLS override against the Compose specification's schema
#     (compose-go's Go module), each broker's merged configuration, and deploy/etcd-tls.sh;
#   - Terraform: `terraform fmt -check` when terraform is installed, hclfmt (HashiCorp's HCL
#     formatter, from its Go module; the same formatting rules) always, and checkov (PyPI)
#     with its HCL parser.
# Called by scripts/test.sh; runs alone too. Tools land in target/tools.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
export PATH="$HOME/.local/bin:$PATH"

HELM_VERSION=v3.16.4
HCLFMT_VERSION=v2.23.0
PROMETHEUS_OPERATOR_VERSION=v0.78.2
KEDA_VERSION=v2.16.1
CERT_MANAGER_VERSION=v1.16.2
COMPOSE_GO_VERSION=v2.4.5

say() { printf '\n== %s\n' "$*"; }

command -v go >/dev/null || { echo "go not found: Helm, hclfmt and the CRD schemas come from Go modules" >&2; exit 1; }
tools="$root/target/tools"
mkdir -p "$tools/bin"
if [ ! -x "$tools/bin/helm" ] || ! "$tools/bin/helm" version --short | grep -q "${HELM_VERSION%.*}"; then
  say "building helm $HELM_VERSION from its Go module"
  GOBIN="$tools/bin" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if [ ! -x "$tools/bin/hclfmt" ]; then
  say "building hclfmt $HCLFMT_VERSION from its Go module"
  GOBIN="$tools/bin" go install "github.com/hashicorp/hcl/v2/cmd/hclfmt@$HCLFMT_VERSION"
fi
module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
crds_prom="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")/example/prometheus-operator-crd"
crds_keda="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")/config/crd/bases"
crds_cm="$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")/deploy/crds"
compose_schema="$(module_dir "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION")/schema/compose-spec.json"

if ! python3 -c 'import kubernetes_validate, hcl2, jsonschema, yaml' 2>/dev/null || ! command -v checkov >/dev/null; then
  # checkov brings its HCL parser (bc-python-hcl2, the `hcl2` module).
  say "installing kubernetes-validate and checkov"
  python3 -m pip install --quiet kubernetes-validate checkov jsonschema pyyaml 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages kubernetes-validate checkov jsonschema pyyaml
  hash -r
fi

say "the image's binary (deploy/build.sh, as the Dockerfile runs it)"
silt="$root/target/image/silt"
bash deploy/build.sh "$silt"
grep -q 'deploy/build.sh /out/silt' deploy/Dockerfile \
  || { echo "deploy/Dockerfile no longer builds with deploy/build.sh" >&2; exit 1; }
# The runtime image is Debian bookworm (glibc 2.36): the binary must not need a newer glibc.
newest_glibc="$(objdump -T "$silt" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
echo "newest glibc symbol version needed: $newest_glibc"
python3 - "$newest_glibc" <<'EOF'
import sys
v = tuple(int(x) for x in sys.argv[1].removeprefix("GLIBC_").split("."))
sys.exit(f"{sys.argv[1]} is newer than bookworm's glibc 2.36" if v > (2, 36) else 0)
EOF
bash scripts/smoke-binary.sh "$silt"

say "helm chart, compose file, terraform"
if command -v terraform >/dev/null; then
  : > "$tools/terraformrc"
  TF_CLI_CONFIG_FILE="$tools/terraformrc" terraform fmt -check -recursive -diff terraform
  echo "terraform fmt -check: ok ($(TF_CLI_CONFIG_FILE="$tools/terraformrc" terraform version | head -1))"
else
  echo "terraform is not installed here: formatting is checked with hclfmt only"
fi
unformatted=0
while IFS= read -r f; do
  "$tools/bin/hclfmt" -check -require-no-change "$f" >/dev/null || { echo "not formatted: $f" >&2; unformatted=1; }
done < <(find terraform -name '*.tf')
[ "$unformatted" = 0 ] && echo "hclfmt -require-no-change: ok"
[ "$unformatted" = 0 ]
python3 scripts/check_deploy.py \
  --helm "$tools/bin/helm" \
  --silt "$silt" \
  --crd-dir "$crds_prom" --crd-dir "$crds_keda" --crd-dir "$crds_cm" \
  --compose-schema "$compose_schema" \
  --checkov "$(command -v checkov)"

#!/usr/bin/env python3
"""Checks the deployment artifacts with the tools platform engineers use.

Called by scripts/check-deploy.sh, which installs the tools first. Each check prints what it
did; any failure ends with a non-zero exit and says what is wrong.

  chart      Helm renders helm/silt for the default values and every helm/silt/ci/*.yaml set;
             every rendered object is validated against the Kubernetes schemas
             (kubernetes-validate, strict: unknown fields fail) or, for custom resources,
             against the CRD's own openAPIV3Schema (ServiceMonitor, ScaledObject,
             Certificate); the silt.toml each set renders is loaded by the real binary
             (`silt check-config`) with the environment the pod spec gives it, and every
             ${env:NAME} it names must be set by that pod spec. Every helm/silt/ci/invalid/*.yaml
             set must be refused by values.schema.json (or the chart's own checks) with the
             message its `# expect:` line gives. checkov scans the rendered manifests.
  compose    deploy/docker-compose.yml is validated against the Compose specification's
             schema; each broker's configuration is loaded by `silt check-config` with the
             service's environment, and the address each listener advertises must be one its
             clients can reach (the published host port for HOST, the service name for
             INTERNAL).
  terraform  Every .tf file parses (python-hcl2); module variables and outputs are documented
             and typed; every var.X is declared; the examples pass only declared variables and
             every required one; checkov finds no failed check.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
KUBE_VERSION = "1.31.0"
# Custom resources the chart can render, and the CRD file (in a Go module) that defines each.
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("cert-manager.io/v1", "Certificate"): "crd-certificates.yaml",
}
# checkov findings the chart deliberately does not follow, with the reason.
CHECKOV_K8S_SKIPS = {
    "CKV_K8S_11": "no CPU limit by default: throttling a broker's request threads hurts latency; set resources.limits.cpu to have one",
    "CKV_K8S_15": "imagePullPolicy is a value (IfNotPresent by default, as for a pinned tag)",
    "CKV_K8S_43": "images are pinned by tag; image.digest pins by digest",
    "CKV2_K8S_6": "NetworkPolicy is opt-in (networkPolicy.enabled): which namespaces may connect is the installer's decision",
    "CKV_K8S_35": "S3 keys (when not IRSA) and the SASL admin password reach the broker as AWS_* and ${env:} variables, the forms object_store and silt.toml read",
}

failures = []


def fail(what):
    failures.append(what)
    print(f"FAIL {what}", flush=True)


def ok(what):
    print(f"ok   {what}", flush=True)


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


# --- Custom resources -------------------------------------------------------------------


def strict(schema):
    """A CRD schema with unknown fields refused, as `kubectl apply` with strict field
    validation does (structural schemas prune them otherwise), and Kubernetes' int-or-string
    extension spelled in JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    s = {k: strict(v) if isinstance(v, (dict, list)) else v for k, v in schema.items()}
    if isinstance(schema.get("items"), list):
        s["items"] = [strict(i) for i in schema["items"]]
    if "properties" in s:
        s["properties"] = {k: strict(v) for k, v in s["properties"].items()}
        if not s.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in s:
            s["additionalProperties"] = False
    if s.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema and isinstance(schema[key], list):
            s[key] = [strict(x) for x in schema[key]]
    return s


def load_crd_schemas(crd_dirs):
    schemas = {}
    for (api_version, kind), name in CRDS.items():
        path = next((os.path.join(d, name) for d in crd_dirs if os.path.exists(os.path.join(d, name))), None)
        if path is None:
            raise RuntimeError(f"CRD file {name} not found in {crd_dirs}")
        with open(path) as f:
            crd = yaml.safe_load(f)
        group, version = api_version.split("/")
        assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, path
        for v in crd["spec"]["versions"]:
            if v["name"] == version:
                schema = strict(v["schema"]["openAPIV3Schema"])
                # apiVersion, kind and metadata are checked by the API server, not the CRD.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(api_version, kind)] = schema
        assert (api_version, kind) in schemas, f"{path} has no version {version}"
    return schemas


def validate_object(doc, crd_schemas, source):
    ref = (doc.get("apiVersion"), doc.get("kind"))
    name = f"{source}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if ref in crd_schemas:
        errors = sorted(jsonschema.Draft7Validator(crd_schemas[ref]).iter_errors(doc), key=str)
        if errors:
            fail(f"{name} against its CRD: " + "; ".join(
                f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))
        return
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        fail(f"{name}: no schema for {ref}: add its CRD to CRDS")
    except kubernetes_validate.ValidationError as e:
        fail(f"{name}: {e.message} at {'.'.join(map(str, e.path))}")


# --- The chart ----------------------------------------------------------------------------


def render(helm, values_file, extra=()):
    cmd = [helm, "template", "silt", os.path.join(ROOT, "helm/silt"), "--namespace", "streaming",
           "--kube-version", KUBE_VERSION, *extra]
    if values_file:
        cmd += ["-f", values_file]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def container_env(statefulset):
    env = {}
    for e in statefulset["spec"]["template"]["spec"]["containers"][0].get("env", []):
        env[e["name"]] = e["value"] if "value" in e else f"<from {next(iter(e['valueFrom']))}>"
    return env


def check_config_with_pod_env(silt, toml_text, pod_env, label):
    """Loads the rendered silt.toml with the real binary, with the pod's environment
    (values from the downward API and Secrets stood in for)."""
    referenced = set(re.findall(r"\$\{env:([A-Za-z0-9_]+)\}", toml_text))
    missing = referenced - set(pod_env)
    if missing:
        fail(f"{label}: silt.toml refers to ${{env:...}} {sorted(missing)} which the pod does not set")
        return None
    stand_ins = {
        "POD_NAME": "silt-0",
        "SILT_NODE_ID": "0",
    }
    env = {"PATH": os.environ.get("PATH", "")}
    for k, v in pod_env.items():
        env[k] = stand_ins.get(k, "stand-in-secret" if v.startswith("<from") else v)
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(toml_text)
    env["SILT_CONFIG"] = f.name
    try:
        p = subprocess.run([silt, "check-config"], capture_output=True, text=True, env=env, timeout=30)
    finally:
        os.unlink(f.name)
    if p.returncode != 0:
        fail(f"{label}: silt check-config refused the rendered silt.toml: {p.stderr.strip()}\n{toml_text}")
        return None
    return json.loads(p.stdout)


def check_chart(helm, silt, crd_schemas, checkov):
    chart = os.path.join(ROOT, "helm/silt")
    sets = [None] + sorted(glob.glob(os.path.join(chart, "ci", "*.yaml")))
    for values in sets:
        label = os.path.relpath(values, ROOT) if values else "default values"
        lint = run([helm, "lint", "--strict", chart, "--kube-version", KUBE_VERSION,
                    *(["-f", values] if values else [])], check=False)
        if lint.returncode != 0:
            fail(f"helm lint --strict with {label}:\n{lint.stdout}{lint.stderr}")
            continue
        r = render(helm, values)
        if r.returncode != 0:
            fail(f"helm template with {label}: {r.stderr.strip()}")
            continue
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        before = len(failures)
        for doc in docs:
            validate_object(doc, crd_schemas, label)
        kinds = sorted({d["kind"] for d in docs})
        sts = [d for d in docs if d["kind"] == "StatefulSet"]
        cms = [d for d in docs if d["kind"] == "ConfigMap" and "silt.toml" in d.get("data", {})]
        if len(sts) != 1 or len(cms) != 1:
            fail(f"{label}: expected one StatefulSet and one ConfigMap with silt.toml")
            continue
        config = check_config_with_pod_env(silt, cms[0]["data"]["silt.toml"], container_env(sts[0]), label)
        if config is not None:
            listener = config["listeners"][0]
            expected = f"silt-0.silt-headless.streaming.svc.cluster.local:{listener['listen'].rsplit(':', 1)[1]}"
            if listener["advertised"] != expected:
                fail(f"{label}: broker 0 advertises {listener['advertised']}, not its headless-Service name {expected}")
        if len(failures) == before:
            ok(f"chart with {label}: {len(docs)} objects valid for Kubernetes {KUBE_VERSION} ({', '.join(kinds)}); "
               f"silt.toml accepted by silt check-config ({config['listeners'][0]['protocol'] if config else '?'})")
        if checkov:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "rendered.yaml")
                with open(path, "w") as f:
                    f.write(r.stdout)
                c = subprocess.run([checkov, "-f", path, "--framework", "kubernetes", "--compact", "--quiet",
                                    "--skip-download", "--skip-check", ",".join(CHECKOV_K8S_SKIPS)],
                                   capture_output=True, text=True, timeout=600)
                summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", c.stdout)
                if c.returncode != 0 or not summary:
                    fail(f"checkov (kubernetes) on the chart with {label}:\n{c.stdout[-4000:]}")
                else:
                    ok(f"checkov (kubernetes) on the chart with {label}: {summary.group(1)} passed, 0 failed, "
                       f"{summary.group(3)} skipped by annotation; not applied: {', '.join(CHECKOV_K8S_SKIPS)}")

    for bad in sorted(glob.glob(os.path.join(chart, "ci", "invalid", "*.yaml"))):
        label = os.path.relpath(bad, ROOT)
        with open(bad) as f:
            m = re.search(r"^# expect: (.+)$", f.read(), re.M)
        if not m:
            fail(f"{label} has no '# expect: <message>' line")
            continue
        r = render(helm, bad)
        if r.returncode == 0:
            fail(f"{label}: rendered, but must be refused ({m.group(1)})")
        elif m.group(1) not in r.stderr:
            fail(f"{label}: refused, but not with '{m.group(1)}':\n{r.stderr.strip()}")
        else:
            ok(f"{label} refused: {m.group(1)}")


# --- Compose ------------------------------------------------------------------------------


def merge_compose(base, override):
    """Compose's merge of an override file, for what check_compose reads: a service's
    environment maps merge, volumes merge by container path, other keys are replaced."""
    merged = json.loads(json.dumps(base))
    for name, svc in override.get("services", {}).items():
        target = merged["services"].setdefault(name, {})
        for key, value in svc.items():
            if key == "environment":
                target[key] = {**target.get(key, {}), **value}
            elif key == "volumes":
                by_path = {v.split(":")[1]: v for v in target.get(key, [])}
                by_path.update({v.split(":")[1]: v for v in value})
                target[key] = list(by_path.values())
            else:
                target[key] = value
    return merged


def check_compose(silt, compose_schema):
    path = os.path.join(ROOT, "deploy/docker-compose.yml")
    with open(path) as f:
        compose = yaml.safe_load(f)
    with open(compose_schema) as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    if errors:
        fail("docker-compose.yml against the Compose specification: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))
        return
    ok(f"docker-compose.yml is valid against the Compose specification ({os.path.basename(compose_schema)})")
    check_compose_brokers(silt, compose, "docker-compose.yml")

    # The etcd-over-TLS override: valid on its own, and the merged brokers' configuration
    # loads, names etcds:// and finds its certificates under a mounted directory.
    tls_path = os.path.join(ROOT, "deploy/docker-compose.etcd-tls.yml")
    with open(tls_path) as f:
        override = yaml.safe_load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(override), key=str)
    if errors:
        fail("docker-compose.etcd-tls.yml against the Compose specification: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))
        return
    merged = merge_compose(compose, override)
    for name, config in check_compose_brokers(silt, merged, "with docker-compose.etcd-tls.yml").items():
        svc = merged["services"][name]
        mounted = [v.split(":")[1] for v in svc["volumes"]]
        files = [config["etcd"][k] for k in ("ca_file", "cert_file", "key_file")]
        if not config["metadata"].startswith("etcds://"):
            fail(f"{name} with the etcd-tls override: metadata is {config['metadata']}, not etcds://")
        for file in files:
            if not file or not any(file.startswith(m.rstrip("/") + "/") for m in mounted):
                fail(f"{name} with the etcd-tls override: {file} is not under a mounted directory")
    etcd_cmd = " ".join(merged["services"]["etcd"]["command"])
    for flag in ("--client-cert-auth", "--trusted-ca-file=", "https://0.0.0.0:2379"):
        if flag not in etcd_cmd:
            fail(f"etcd with the etcd-tls override lacks {flag}")
    with tempfile.TemporaryDirectory() as d:
        made = subprocess.run(["bash", os.path.join(ROOT, "deploy/etcd-tls.sh"), d],
                              capture_output=True, text=True, timeout=60)
        verify = subprocess.run(["openssl", "verify", "-CAfile", f"{d}/ca.crt", f"{d}/server.crt", f"{d}/client.crt"],
                                capture_output=True, text=True, timeout=30) if made.returncode == 0 else made
        names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", f"{d}/server.crt"],
                               capture_output=True, text=True, timeout=30) if made.returncode == 0 else made
        if verify.returncode != 0 or "DNS:etcd" not in names.stdout:
            fail(f"deploy/etcd-tls.sh: {made.stderr}{verify.stdout}{verify.stderr}{names.stdout}")
        else:
            ok("deploy/etcd-tls.sh makes a CA, etcd's certificate (DNS:etcd) and the brokers' client certificate")


def check_compose_brokers(silt, compose, label):
    """Loads each broker's configuration with `silt check-config`; returns them by name."""
    configs = {}
    services = compose["services"]
    brokers = {n: s for n, s in services.items() if n.startswith("silt-")}
    if len(brokers) != 3:
        fail(f"docker-compose.yml has {len(brokers)} silt brokers, not 3")
    published = {}
    node_ids = set()
    for name, svc in sorted(brokers.items()):
        env = {k: str(v) for k, v in svc["environment"].items()}
        mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"] if ":" in m}
        config_file = mounts.get(env["SILT_CONFIG"])
        if not config_file:
            fail(f"{name}: SILT_CONFIG {env['SILT_CONFIG']} is not mounted")
            continue
        ports = {}
        for p in svc.get("ports", []):
            host, container = str(p).rsplit(":", 1)
            host_port = host.rsplit(":", 1)[-1]
            if host_port in published:
                fail(f"{name}: host port {host_port} is also published by {published[host_port]}")
            published[host_port] = name
            ports[container] = host_port
        run_env = {"PATH": os.environ.get("PATH", ""), **env,
                   "SILT_CONFIG": os.path.join(ROOT, "deploy", os.path.normpath(config_file))}
        p = subprocess.run([silt, "check-config"], capture_output=True, text=True, env=run_env, timeout=30)
        if p.returncode != 0:
            fail(f"{name}: silt check-config refused its configuration: {p.stderr.strip()}")
            continue
        config = json.loads(p.stdout)
        configs[name] = config
        node_ids.add(config["node_id"])
        for listener in config["listeners"]:
            listen_port = listener["listen"].rsplit(":", 1)[1]
            adv_host, adv_port = listener["advertised"].rsplit(":", 1)
            if adv_host in ("127.0.0.1", "localhost"):
                if ports.get(listen_port) != adv_port:
                    fail(f"{name}: {listener['name']} advertises {listener['advertised']} but container port "
                         f"{listen_port} is published on {ports.get(listen_port)}")
            elif adv_host != name or adv_port != listen_port:
                fail(f"{name}: {listener['name']} advertises {listener['advertised']}, not {name}:{listen_port}")
        ok(f"{name} ({label}): node {config['node_id']}, {config['metadata']}, listeners " + ", ".join(
            f"{l['name']} {l['listen']} -> {l['advertised']}" for l in config["listeners"]))
    if len(node_ids) != len(brokers):
        fail(f"compose brokers share node ids: {sorted(node_ids)}")
    return configs


# --- Terraform ----------------------------------------------------------------------------


def hcl_value(x):
    """A parsed HCL attribute as a plain value: checkov's parser (bc-python-hcl2) wraps each in a
    one-element list; newer python-hcl2 keeps string quotes."""
    while isinstance(x, list) and len(x) == 1:
        x = x[0]
    if isinstance(x, str) and len(x) >= 2 and x[0] == x[-1] == '"':
        x = x[1:-1]
    return x


def check_terraform(checkov):
    import hcl2  # checkov's HCL parser (bc-python-hcl2), installed with checkov

    tf_root = os.path.join(ROOT, "terraform")
    modules = {}
    for d in sorted({os.path.dirname(p) for p in glob.glob(os.path.join(tf_root, "**", "*.tf"), recursive=True)}):
        blocks = {"variable": {}, "output": {}, "module": {}, "text": ""}
        for path in sorted(glob.glob(os.path.join(d, "*.tf"))):
            with open(path) as f:
                text = f.read()
            try:
                parsed = hcl2.loads(text)
            except Exception as e:  # the parser's own exception types vary by version
                fail(f"{os.path.relpath(path, ROOT)} does not parse: {e}")
                continue
            blocks["text"] += text
            for kind in ("variable", "output", "module"):
                for entry in parsed.get(kind, []):
                    blocks[kind].update({k: {a: hcl_value(v) for a, v in body.items()}
                                         for k, body in entry.items()})
        modules[d] = blocks
    for d, b in modules.items():
        rel = os.path.relpath(d, ROOT)
        for name, v in b["variable"].items():
            v = {k: x for k, x in v.items() if not k.startswith("__")}
            if not v.get("description") or "type" not in v:
                fail(f"{rel}: variable {name} needs a description and a type")
        for name, o in b["output"].items():
            if not o.get("description"):
                fail(f"{rel}: output {name} needs a description")
        used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", b["text"]))
        for name in sorted(used - set(b["variable"])):
            fail(f"{rel}: var.{name} is used but not declared")
        for mod_name, call in b["module"].items():
            source = os.path.normpath(os.path.join(d, call["source"]))
            target = modules.get(source)
            if target is None:
                fail(f"{rel}: module {mod_name} source {call['source']} is not in this repository")
                continue
            args = {a for a in call if not a.startswith("__")} - {
                "source", "version", "providers", "depends_on", "count", "for_each"}
            for a in sorted(args - set(target["variable"])):
                fail(f"{rel}: module {mod_name} passes {a}, which {os.path.relpath(source, ROOT)} does not declare")
            required = {n for n, v in target["variable"].items() if "default" not in v}
            for r in sorted(required - args):
                fail(f"{rel}: module {mod_name} does not pass the required variable {r}")
    ok(f"terraform: {len(modules)} directories parse (checkov's HCL parser); variables and outputs documented and typed; "
       f"module calls match the module's variables")
    if checkov:
        c = subprocess.run([checkov, "-d", tf_root, "--framework", "terraform", "--compact", "--quiet",
                            "--skip-download"], capture_output=True, text=True, timeout=600)
        summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", c.stdout)
        if c.returncode != 0 or not summary:
            fail(f"checkov (terraform):\n{c.stdout[-4000:]}")
        else:
            ok(f"checkov (terraform): {summary.group(1)} passed, 0 failed, {summary.group(3)} skipped "
               f"(each skip is annotated in the resource)")


def check_dockerfile(checkov):
    path = os.path.join(ROOT, "deploy/Dockerfile")
    with open(path) as f:
        text = f.read()
    if "deploy/build.sh /out/silt" not in text:
        fail("deploy/Dockerfile does not build with deploy/build.sh (CI builds the binary that way)")
    if not re.search(r"^USER (?!root|0)", text, re.M):
        fail("deploy/Dockerfile does not switch to a non-root user")
    if checkov:
        c = subprocess.run([checkov, "-f", path, "--framework", "dockerfile", "--compact", "--quiet",
                            "--skip-download"], capture_output=True, text=True, timeout=600)
        summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", c.stdout)
        if c.returncode != 0 or not summary:
            fail(f"checkov (dockerfile):\n{c.stdout[-4000:]}")
        else:
            ok(f"checkov (dockerfile) on deploy/Dockerfile: {summary.group(1)} passed, 0 failed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--helm", required=True)
    ap.add_argument("--silt", required=True, help="the silt binary built like the image's")
    ap.add_argument("--crd-dir", action="append", default=[])
    ap.add_argument("--compose-schema", required=True)
    ap.add_argument("--checkov")
    args = ap.parse_args()
    crd_schemas = load_crd_schemas(args.crd_dir)
    check_chart(args.helm, args.silt, crd_schemas, args.checkov)
    check_compose(args.silt, args.compose_schema)
    check_dockerfile(args.checkov)
    check_terraform(args.checkov)
    if failures:
        print(f"\n{len(failures)} deployment check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("\nall deployment checks passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Offline checks of the deployment files (run by scripts/check-deploy.sh; CI has no docker
daemon, no kubectl and no network).

  deploy_check.py compose FILE            the Compose file: interpolated as compose does, then
                                          validated against the Compose Specification's schema
                                          (deploy/schemas/compose-spec.json) and for what the
                                          schema cannot see (paths, service references)
  deploy_check.py containerfile FILE      the Containerfile: instructions, stages, COPY sources,
                                          non-root USER, HEALTHCHECK, exec-form ENTRYPOINT
  deploy_check.py prometheusrule [--write] deploy/k8s/base/prometheusrule.yaml is generated from
                                          deploy/prometheus/alerts.yml: check it is current
                                          (or rewrite it)
  deploy_check.py render DIR              print the kustomization in DIR rendered (a subset of
                                          kustomize: the fields used here; any other field is
                                          an error, never ignored)
  deploy_check.py k8s DIR...              render each kustomization and validate every object:
                                          built-in kinds with kubernetes-validate (strict: an
                                          unknown field fails), the Prometheus operator's kinds
                                          against their CRD schemas (deploy/schemas/; strict
                                          too: a field the API server would prune fails), then
                                          the gateway's own rules (probes, security context,
                                          resources, references, no Secret values)

Every failure is printed as `file: what is wrong` and the exit status is 1.
"""

import copy
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "deploy" / "schemas"
K8S_VERSION = "1.30.0"

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


# ---------------------------------------------------------------- compose

_VAR = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env, where):
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+alt}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def one(m):
        if m.group(1) == "$":
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        val = env.get(name)
        unset_or_empty = val is None or (op is not None and op.startswith(":") and val == "")
        if op in (":?", "?") and unset_or_empty:
            problem(where, f"required variable {name} is not set: {arg}")
            return ""
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return val or ""

    return _VAR.sub(one, value)


def check_compose(path):
    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        problem(where, f"not YAML: {e}")
        return
    doc = interpolate(raw, dict(os.environ), where)
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        loc = "/".join(str(p) for p in err.absolute_path) or "(top)"
        problem(where, f"{loc}: {err.message}")
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        problem(where, "no services")
        return
    base = path.parent
    services = doc["services"]
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        here = f"{where}: services.{name}"
        build = svc.get("build")
        if build is not None:
            ctx = base / (build if isinstance(build, str) else build.get("context", "."))
            if not ctx.is_dir():
                problems.append(f"{here}.build.context: {ctx} is not a folder")
            elif isinstance(build, dict) and build.get("dockerfile"):
                if not (ctx / build["dockerfile"]).is_file():
                    problems.append(f"{here}.build.dockerfile: {ctx / build['dockerfile']} does not exist")
        if build is None and "image" not in svc:
            problems.append(f"{here}: neither image nor build")
        deps = svc.get("depends_on") or []
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problems.append(f"{here}.depends_on: no service {dep}")
        mode = svc.get("network_mode", "")
        if mode.startswith("service:") and mode[len("service:"):] not in services:
            problems.append(f"{here}.network_mode: no service {mode[len('service:'):]}")
        for v in svc.get("volumes") or []:
            source = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
            if source.startswith((".", "/")):
                if not (base / source).exists():
                    problems.append(f"{here}.volumes: {source} does not exist (from {base})")
            elif source and source not in volumes:
                problems.append(f"{here}.volumes: named volume {source} is not declared")


# ---------------------------------------------------------------- Containerfile

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}


def check_containerfile(path):
    """What hadolint is not needed for: known instructions, named stages, COPY sources that
    exist (from the repository root, the build context), a non-root final USER, a
    HEALTHCHECK, an exec-form ENTRYPOINT."""
    path = Path(path)
    where = str(path)
    text = re.sub(r"\\\n", " ", path.read_text())
    stages, final = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() not in INSTRUCTIONS or word != word.upper():
            problem(where, f"line {n}: unknown instruction {word}")
            continue
        if word == "FROM":
            m = re.match(r"(\S+)\s+AS\s+(\S+)$", rest.strip(), re.I)
            if not m:
                problem(where, f"line {n}: FROM without `AS name`")
            stages.append(m.group(2) if m else None)
            final = {}
        elif word == "COPY":
            parts = [p for p in rest.split() if not p.startswith("--")]
            if "--from=" not in rest:
                for src in parts[:-1]:
                    if not (ROOT / src).exists():
                        problem(where, f"line {n}: COPY source {src} does not exist in the repository")
            else:
                stage = re.search(r"--from=(\S+)", rest).group(1)
                if stage not in stages:
                    problem(where, f"line {n}: COPY --from={stage}: no such earlier stage")
        final[word] = rest
    if len(stages) < 2:
        problem(where, "not multi-stage (a builder and a runtime stage)")
    user = final.get("USER", "").split(":")[0]
    if not user or user in ("root", "0"):
        problem(where, f"the runtime stage runs as {user or 'root'}: set a non-root USER")
    if "HEALTHCHECK" not in final:
        problem(where, "the runtime stage has no HEALTHCHECK")
    if not final.get("ENTRYPOINT", "").startswith("["):
        problem(where, "ENTRYPOINT is not in exec form (signals would go to a shell)")


# ---------------------------------------------------------------- PrometheusRule

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_FILE = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"


def prometheusrule_text():
    alerts = yaml.safe_load(ALERTS.read_text())
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "gateway"},
        "spec": {"groups": alerts["groups"]},
    }
    head = (
        "# Generated from deploy/prometheus/alerts.yml (the one place the rules are written) by\n"
        "#   python3 scripts/deploy_check.py prometheusrule --write\n"
        "# Do not edit: scripts/check-deploy.sh fails when this file and alerts.yml differ.\n"
    )
    return head + yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=100)


def check_prometheusrule(write):
    text = prometheusrule_text()
    if write:
        RULE_FILE.write_text(text)
        print(f"wrote {RULE_FILE.relative_to(ROOT)}")
    elif not RULE_FILE.exists() or RULE_FILE.read_text() != text:
        problem(
            RULE_FILE.relative_to(ROOT),
            "differs from what deploy/prometheus/alerts.yml generates: run "
            "`python3 scripts/deploy_check.py prometheusrule --write`",
        )


# ---------------------------------------------------------------- kustomize (subset)

KNOWN_KEYS = {
    "apiVersion", "kind", "resources", "labels", "configMapGenerator", "namespace", "images",
    "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def load_docs(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problem(path, f"not YAML: {e}")
        return []


def strategic_merge(base, patch):
    """Maps merge key by key; lists of maps with `name` merge item by item (containers,
    env, ports, volumes); other lists are replaced, as kustomize does for these fields."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if k == "$patch":
                raise ValueError("$patch directives are not supported here")
            out[k] = strategic_merge(base[k], v) if k in base else v
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        out = [dict(x) for x in base]
        for item in patch:
            for i, b in enumerate(out):
                if b["name"] == item["name"]:
                    out[i] = strategic_merge(b, item)
                    break
            else:
                out.append(item)
        return out
    return copy.deepcopy(patch)


def pod_spec(obj):
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    return None


def render(directory):
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        problem(directory, "no kustomization.yaml")
        return []
    k = yaml.safe_load(kfile.read_text()) or {}
    for key in k:
        if key not in KNOWN_KEYS:
            problem(kfile, f"`{key}` is not supported by this renderer: extend scripts/deploy_check.py")
    objs = []
    for res in k.get("resources", []):
        p = (directory / res).resolve()
        if p.is_dir():
            objs.extend(render(p))
        elif p.is_file():
            objs.extend(load_docs(p))
        else:
            problem(kfile, f"resource {res} does not exist")
    renames = {}
    for gen in k.get("configMapGenerator", []):
        data = {}
        for f in gen.get("files", []):
            key, _, src = f.partition("=") if "=" in f else (Path(f).name, "", f)
            src_path = directory / src
            if not src_path.is_file():
                problem(kfile, f"configMapGenerator {gen['name']}: {src} does not exist")
                continue
            data[key] = src_path.read_text()
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
        name = f"{gen['name']}-{digest}"
        renames[gen["name"]] = name
        objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    for obj in objs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for vol in spec.get("volumes", []):
            cm = vol.get("configMap")
            if cm and cm.get("name") in renames:
                cm["name"] = renames[cm["name"]]
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            problem(kfile, f"patch {patch}: only `path:` patches are supported")
            continue
        for p in load_docs(directory / patch["path"]):
            kind, name = p.get("kind"), p.get("metadata", {}).get("name")
            targets = [o for o in objs if o.get("kind") == kind and o["metadata"].get("name") == name]
            if not targets:
                problem(directory / patch["path"], f"patches {kind}/{name}, which the resources do not hold")
            for t in targets:
                try:
                    merged = strategic_merge(t, p)
                except ValueError as e:
                    problem(directory / patch["path"], str(e))
                    continue
                t.clear()
                t.update(merged)
    for entry in k.get("labels", []):
        pairs = entry.get("pairs", {})
        for obj in objs:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            spec = pod_spec(obj)
            if spec is not None and (entry.get("includeSelectors") or entry.get("includeTemplates")):
                obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if entry.get("includeSelectors"):
                kind = obj.get("kind")
                if kind in ("Deployment", "StatefulSet", "DaemonSet", "PodDisruptionBudget"):
                    obj["spec"].setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
                elif kind == "Service":
                    obj["spec"].setdefault("selector", {}).update(pairs)
    if "namespace" in k:
        for obj in objs:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    for img in k.get("images", []):
        for obj in objs:
            spec = pod_spec(obj)
            if spec is None:
                continue
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                repo = re.split(r"[:@]", c.get("image", ""), maxsplit=1)[0]
                if repo == img["name"]:
                    new = img.get("newName", repo)
                    if "digest" in img:
                        new += "@" + img["digest"]
                    elif "newTag" in img:
                        new += ":" + img["newTag"]
                    c["image"] = new
    return objs


# ---------------------------------------------------------------- validation

CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-v1.json",
}


def pruned_fields(value, schema, path):
    """Fields the API server would prune: keys a structural schema does not declare."""
    out = []
    if isinstance(value, dict) and isinstance(schema, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return out
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                out += pruned_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += pruned_fields(v, extra, f"{path}.{k}")
            elif props is not None:
                out.append(f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema, dict) and "items" in schema:
        for i, v in enumerate(value):
            out += pruned_fields(v, schema["items"], f"{path}[{i}]")
    return out


def validate_objects(where, objs):
    import kubernetes_validate

    for obj in objs:
        ident = f"{where}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_SCHEMAS:
            schema = json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text())
            for err in jsonschema.Draft7Validator(schema).iter_errors(obj):
                loc = "/".join(str(p) for p in err.absolute_path)
                problems.append(f"{ident}: {loc}: {err.message}")
            for field in pruned_fields(obj, schema, ""):
                problems.append(f"{ident}: {field}: not in the CRD schema (the API server would drop it)")
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            loc = "/".join(str(p) for p in e.path)
            problems.append(f"{ident}: {loc}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{ident}: no schema for this kind: {e}")
        except kubernetes_validate.InvalidSchemaError as e:
            problems.append(f"{ident}: {e}")


def gateway_rules(where, objs, base):
    """What the brief of the deployment promises, checked on the rendered objects."""
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    if by_kind.get("Secret"):
        problem(where, "a Secret object is rendered: secrets are referenced, never written here")
    deps = by_kind.get("Deployment", [])
    if len(deps) != 1:
        problem(where, f"expected one Deployment, found {len(deps)}")
        return
    dep = deps[0]
    if base and dep["spec"].get("replicas") != 2:
        problem(where, f"Deployment replicas is {dep['spec'].get('replicas')}, not 2")
    spec = pod_spec(dep)
    pod_labels = dep["spec"]["template"].get("metadata", {}).get("labels", {})
    if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
        problem(where, "pod securityContext.runAsNonRoot is not true")
    cms = {o["metadata"]["name"] for o in by_kind.get("ConfigMap", [])}
    for vol in spec.get("volumes", []):
        if "configMap" in vol and vol["configMap"]["name"] not in cms:
            problem(where, f"volume {vol['name']}: ConfigMap {vol['configMap']['name']} is not rendered")
        if "secret" in vol:
            problem(where, f"volume {vol['name']}: mount secrets by reference in env (secretKeyRef)")
    ports = set()
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        cid = f"container {c['name']}"
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(where, f"{cid}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(where, f"{cid}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(where, f"{cid}: capabilities.drop is not [ALL]")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(part, {}):
                    problem(where, f"{cid}: resources.{part}.{r} is not set")
        for e in c.get("env", []):
            if "value" in e and re.search(r"(PASSWORD|TOKEN|SECRET|KEY)$", e["name"]):
                problem(where, f"{cid}: env {e['name']} has a literal value: use secretKeyRef")
        ports |= {p["name"] for p in c.get("ports", []) if "name" in p}
    gw = next((c for c in spec.get("containers", []) if c["name"] == "gateway"), None)
    if gw is None:
        problem(where, "no container named gateway")
        return
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        got = gw.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            problem(where, f"gateway {probe} asks {got}, not {path}")
    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            problem(where, f"Service {svc['metadata']['name']}: selector {sel} does not match the pods {pod_labels}")
        for p in svc["spec"].get("ports", []):
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                problem(where, f"Service port {p['name']}: targetPort {p['targetPort']} is no container port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            problem(where, f"PodDisruptionBudget: selector {sel} does not match the pods")
    svc_ports = {p["name"] for s in by_kind.get("Service", []) for p in s["spec"].get("ports", [])}
    svc_labels = [s["metadata"].get("labels", {}) for s in by_kind.get("Service", [])]
    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        if not any(sel and all(l.get(k) == v for k, v in sel.items()) for l in svc_labels):
            problem(where, f"ServiceMonitor: selector {sel} matches no Service")
        for ep in sm["spec"].get("endpoints", []):
            if ep.get("port") not in svc_ports:
                problem(where, f"ServiceMonitor: port {ep.get('port')} is no Service port")
    rules = by_kind.get("PrometheusRule", [])
    want = yaml.safe_load(ALERTS.read_text())["groups"]
    if len(rules) != 1 or rules[0]["spec"]["groups"] != want:
        problem(where, "the PrometheusRule's groups are not deploy/prometheus/alerts.yml's")


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "compose":
        for f in args:
            check_compose(f)
    elif cmd == "containerfile":
        for f in args:
            check_containerfile(f)
    elif cmd == "prometheusrule":
        check_prometheusrule("--write" in args)
    elif cmd == "render":
        objs = render(args[0])
        print(yaml.safe_dump_all(objs, sort_keys=False, width=100), end="")
    elif cmd == "k8s":
        for d in args:
            objs = render(d)
            validate_objects(d, objs)
            gateway_rules(d, objs, base=Path(d).name == "base")
            print(f"{d}: {len(objs)} objects rendered: " + ", ".join(
                f"{o['kind']}/{o['metadata']['name']}" for o in objs))
    else:
        print(f"unknown command {cmd}\n{__doc__}")
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

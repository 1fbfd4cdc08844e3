"""The deployment and monitoring assets in deploy/: promtool accepts the rules and config, the
dashboard and alerts use only metrics the hub exports, and the compose and Kubernetes files
agree with the hub config (topics, partitions, secrets, config path)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.config import HubConfig, parse_config
from hub.kafka import Topics
from tests import spec

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "registry-hub.json"
COMPOSE = DEPLOY / "docker-compose.yml"
EXAMPLE_CONFIG = DEPLOY / "hub.example.yaml"
K8S = DEPLOY / "k8s"
SECRET_TEMPLATE = "secret.example.yaml"

SPEC_METRICS = set(spec.SPEC_METRICS)
# Series Prometheus itself provides for every target; nothing else outside the hub's own.
PROMETHEUS_BUILTINS = {"up"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "and",
    "or",
    "unless",
    "bool",
    "inf",
    "nan",
}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_HUB_IMAGE = "registry-hub"


# --- helpers ---------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool not found on PATH: it is a CI dependency — install the Debian package "
            "`prometheus` (apt-get install prometheus; .ci/run does this)"
        )
    return subprocess.run(
        [exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def exported_metric_names() -> set[str]:
    """Every series name the hub's processes expose, including counter and histogram suffixes.

    Labelled metrics have no samples until first used, so names come from each family's type.
    """
    from prometheus_client import REGISTRY

    import hub.metrics  # noqa: F401 - registers the hub's collectors

    # hub.metrics disables the *_created series, so they are not listed.
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords and labels dropped)."""
    text = re.sub(r"#[^\n]*", " ", expr)  # comments
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', " ", text)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in PROMQL_WORDS:
            continue
        names.add(name)
    return names


def walk_strings(data: Any):
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for v in data.values():
            yield from walk_strings(v)
    elif isinstance(data, list):
        for v in data:
            yield from walk_strings(v)


def env_refs(raw: Any) -> set[str]:
    """Environment variables a config references with ``${NAME}`` (or ``${NAME:-default}``)."""
    return {m.group(1) for s in walk_strings(raw) for m in _ENV_REF.finditer(s)}


def required_env_refs(raw: Any) -> set[str]:
    """The ``${NAME}`` references without a default: the process fails to start without them."""
    return {
        m.group(1)
        for s in walk_strings(raw)
        for m in _ENV_REF.finditer(s)
        if ":-" not in m.group(0)
    }


def validate_config(raw: Any) -> HubConfig:
    return parse_config(raw, env={name: "dummy" for name in env_refs(raw)}, source="test")


def load_alerts() -> dict[str, Any]:
    return yaml.safe_load(ALERTS.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_alerts()["groups"] for r in g["rules"] if "alert" in r]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for p in dashboard["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))  # collapsed rows hold their panels
    return panels


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", q.strip())
            exprs.append(m.group(1) if m else q)
    return exprs


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def hub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).split(":")[0] == _HUB_IMAGE
    }


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_docs(*, include_template: bool = True) -> list[dict[str, Any]]:
    docs = []
    for path in k8s_files():
        if path.name == SECRET_TEMPLATE and not include_template:
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] == kind]


def k8s_one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in k8s_kind(kind) if d["metadata"]["name"] == name]
    return doc


def k8s_config_raw() -> dict[str, Any]:
    return yaml.safe_load(k8s_one("ConfigMap", "registry-hub-config")["data"]["hub.yaml"])


# --- promtool ---------------------------------------------------------------------------------


@pytest.mark.requires("promtool")
def test_promtool_accepts_the_alert_rules():
    result = promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.requires("promtool")
def test_alert_rule_unit_tests_pass():
    result = promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.requires("promtool")
def test_promtool_accepts_the_prometheus_config_with_its_rule_file():
    result = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


# --- alert rules ------------------------------------------------------------------------------


def test_every_alert_has_for_severity_summary_and_description():
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_alerts_cover_the_spec_situations():
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    assert any("hub_connector_up" in e for e in exprs.values()), "connector down"
    assert any(re.search(r"\bup\{job", e) for e in exprs.values()), "process down"
    assert any("hub_connector_lag_seconds" in e for e in exprs.values()), "connector stalled"
    assert any("hub_connector_slot_lag_bytes" in e for e in exprs.values()), "slot lag"
    assert any("hub_consumer_lag_messages" in e for e in exprs.values()), "consumer lag"
    assert any("hub_dead_letters_total" in e for e in exprs.values()), "dead letters"
    assert any("hub_mismatches_open" in e for e in exprs.values()), "mismatch surge"


def test_alert_exprs_use_only_metrics_the_hub_exports():
    exported = exported_metric_names() | PROMETHEUS_BUILTINS
    for rule in alert_rules():
        unknown = metric_names(rule["expr"]) - exported
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not exported by the hub"


def test_alert_tests_cover_dead_letters_slot_lag_and_connector_down():
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    firing = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {"HubDeadLetters", "HubSlotLagHigh", "HubConnectorDown"} <= firing


def test_metric_name_extraction_skips_functions_keywords_and_labels():
    expr = (
        'sum by (le) (rate(hub_x_bucket{job=~"a|b", le="+Inf"}[5m])) > 0 '
        "and on (job) (up offset 10m) unless hub_y_total # hub_comment\n"
        "or time() - max(hub_z) > bool 1e3"
    )
    assert metric_names(expr) == {"hub_x_bucket", "up", "hub_y_total", "hub_z"}


# --- Grafana dashboard ------------------------------------------------------------------------


def test_dashboard_is_a_modern_grafana_dashboard_with_a_datasource_variable():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["sector"]["type"] == "query"
    assert variables["connector"]["type"] == "query"
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]


def test_dashboard_uses_only_metrics_the_hub_exports():
    exported = exported_metric_names() | PROMETHEUS_BUILTINS
    for expr in dashboard_exprs(load_dashboard()):
        unknown = metric_names(expr) - exported
        assert not unknown, f"{expr!r}: {sorted(unknown)} not exported by the hub"


def test_dashboard_shows_every_spec_metric():
    used = set().union(*(metric_names(e) for e in dashboard_exprs(load_dashboard())))
    assert SPEC_METRICS <= used, sorted(SPEC_METRICS - used)


def test_dashboard_filters_by_sector_and_connector():
    exprs = dashboard_exprs(load_dashboard())
    assert any('sector=~"$sector"' in e for e in exprs)
    assert any('connector=~"$connector"' in e for e in exprs)


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"]
    providers = yaml.safe_load((provisioning / "dashboards" / "registry-hub.yml").read_text())
    (provider,) = providers["providers"]
    grafana = load_compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./grafana/registry-hub.json"].startswith(provider["options"]["path"] + "/")


# --- example config and compose ---------------------------------------------------------------


def test_example_config_validates():
    raw = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config = validate_config(raw)
    assert config.registry is not None
    assert set(config.sectors) >= {"tax", "banking", "labour", "construction"}
    assert {s.capture for s in config.sources().values()} == {"logical", "poll", "snapshot"}
    assert "HUB_DB_PASSWORD" in env_refs(raw)
    assert "${HUB_DB_PASSWORD}" in raw["database"]["url"]


def test_compose_runs_kraft_kafka_logical_postgres_and_every_hub_role():
    compose = load_compose()
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "zookeeper" not in services
    postgres = services["postgres"]["command"]
    for setting in ("wal_level=logical", "max_replication_slots=20", "max_wal_senders=20"):
        assert setting in postgres
    commands = {name: svc["command"] for name, svc in hub_services(compose).items()}
    assert ["db", "upgrade"] in commands.values()
    assert ["connector", "run", "--all"] in commands.values()
    assert ["reconcile"] in commands.values()
    assert ["serve"] in commands.values()


def test_compose_hub_services_mount_the_example_config_and_pass_its_secrets():
    compose = load_compose()
    required = required_env_refs(yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8")))
    services = hub_services(compose)
    assert len(services) >= 4
    for name, svc in services.items():
        config_path = svc["environment"]["HUB_CONFIG"]
        assert f"./hub.example.yaml:{config_path}:ro" in svc["volumes"], name
        missing = required - set(svc["environment"])
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    long_running = [n for n, s in services.items() if s["command"] != ["db", "upgrade"]]
    metrics = parse_config(
        yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8")),
        env=dict.fromkeys(required, "x"),
    ).metrics
    role_of = {"connector": "connector", "reconcile": "reconciler", "serve": "serve", "run": "run"}
    for name in long_running:
        ports = [str(p) for p in services[name]["ports"]]
        port = metrics.address(role_of[services[name]["command"][0]]).rpartition(":")[2]
        assert any(p.endswith(f":{port}") for p in ports), f"{name} does not publish metrics"
        depends = services[name]["depends_on"]
        assert depends["hub-migrate"]["condition"] == "service_completed_successfully"


def test_compose_mounts_exist_and_prometheus_loads_the_rules():
    compose = load_compose()
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("."):
                assert (DEPLOY / host).exists(), f"{name}: {host} missing"
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert {"hub-connectors", "hub-reconciler", "hub-web"} <= jobs


def test_dockerfile_builds_the_package_on_python_3_11_slim():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert re.search(r"pip (wheel|install)\b.*\s\.\s*$", text, re.M)
    assert 'ENTRYPOINT ["hub"]' in text


# --- Kubernetes -------------------------------------------------------------------------------


def test_every_k8s_document_parses_and_names_itself():
    files = k8s_files()
    assert files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert docs, path.name
        for doc in docs:
            assert doc.get("apiVersion"), path.name
            assert doc.get("kind"), path.name
            assert doc.get("metadata", {}).get("name"), f"{path.name}: {doc.get('kind')}"


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in k8s_files()} - {"kustomization.yaml"}
    assert listed == on_disk - {SECRET_TEMPLATE}


def test_secret_template_holds_placeholders_only():
    secret = k8s_one("Secret", "registry-hub-secrets")
    assert "data" not in secret
    for key, value in secret["stringData"].items():
        assert value.startswith("<") and value.endswith(">"), key


def test_k8s_config_validates_and_every_topic_has_the_configured_partition_count():
    config = validate_config(k8s_config_raw())
    topics = k8s_kind("KafkaTopic")
    by_name = {t["spec"]["topicName"]: t for t in topics}
    assert set(by_name) == set(Topics(config.kafka.topic_prefix).all_for(config))
    change_topics = [t for n, t in by_name.items() if n.endswith(".changes")]
    assert len(change_topics) == 1 + len(config.sectors)
    assert {t["spec"]["partitions"] for t in topics} == {config.kafka.partitions}
    clusters = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics}
    assert clusters == {k8s_kind("Kafka")[0]["metadata"]["name"]}


def test_strimzi_kafka_runs_in_kraft_mode_with_node_pools():
    (kafka,) = k8s_kind("Kafka")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    pools = k8s_kind("KafkaNodePool")
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    assert all(
        p["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for p in pools
    )
    (user,) = k8s_kind("KafkaUser")
    assert k8s_config_raw()["kafka"]["sasl_plain_username"] == user["metadata"]["name"]


def test_reconciler_replicas_do_not_exceed_partitions_and_connectors_never_overlap():
    partitions = validate_config(k8s_config_raw()).kafka.partitions
    reconciler = k8s_one("Deployment", "hub-reconciler")
    assert 1 <= reconciler["spec"]["replicas"] <= partitions
    connectors = k8s_one("Deployment", "hub-connectors")
    assert connectors["spec"]["replicas"] == 1
    assert connectors["spec"]["strategy"]["type"] == "Recreate"


def test_web_deployment_probes_health_endpoints():
    (container,) = k8s_one("Deployment", "hub-web")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_hub_pods_get_the_config_and_every_secret_it_references():
    required = required_env_refs(k8s_config_raw())
    secret_keys = set(k8s_one("Secret", "registry-hub-secrets")["stringData"])
    pods = [d["spec"]["template"]["spec"] for d in k8s_kind("Deployment") + k8s_kind("Job")]
    assert len(pods) == 4
    args = sorted(tuple(c["args"]) for p in pods for c in p["containers"])
    assert args == sorted(
        [("connector", "run", "--all"), ("db", "upgrade"), ("reconcile",), ("serve",)]
    )
    for pod in pods:
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container.get("env", [])}
        from_secrets = {
            ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref
        }
        provided = set(env) | (secret_keys if "registry-hub-secrets" in from_secrets else set())
        assert not required - provided, f"{container['name']} lacks {sorted(required - provided)}"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert env["HUB_CONFIG"]["value"] in mounts
        volumes = {v["name"]: v for v in pod["volumes"]}
        config_volume = volumes[mounts[env["HUB_CONFIG"]["value"]]["name"]]
        assert config_volume["configMap"]["name"] == "registry-hub-config"


def test_every_hub_service_exposes_metrics_to_the_service_monitor():
    monitor = k8s_one("ServiceMonitor", "registry-hub")
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        s for s in k8s_kind("Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    # Prometheus' job label is the Service name: the alert rules expect these.
    assert {s["metadata"]["name"] for s in services} == {
        "hub-connectors",
        "hub-reconciler",
        "hub-web",
    }
    port = monitor["spec"]["endpoints"][0]["port"]
    for s in services:
        assert port in {p["name"] for p in s["spec"]["ports"]}, s["metadata"]["name"]


def test_prometheus_rule_wraps_the_same_alert_groups():
    rule = k8s_one("PrometheusRule", "registry-hub")
    assert rule["spec"]["groups"] == load_alerts()["groups"]


# --- metrics ports: one per role, the same in the config, compose, Kubernetes and Prometheus --

ROLE_OF_COMMAND = {"connector": "connector", "reconcile": "reconciler", "serve": "serve"}


def _role_port(metrics, role: str) -> int:
    return int(metrics.address(role).rpartition(":")[2])


def test_every_role_has_its_own_metrics_port_in_the_shipped_configs():
    for raw in (yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8")), k8s_config_raw()):
        metrics = validate_config(raw).metrics
        ports = [_role_port(metrics, r) for r in ("connector", "reconciler", "serve")]
        assert ports == [9464, 9465, 9466]


def test_kubernetes_pods_services_and_annotations_use_their_roles_metrics_port():
    metrics = validate_config(k8s_config_raw()).metrics
    for deployment in k8s_kind("Deployment"):
        name = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        (container,) = [c for c in template["spec"]["containers"] if c.get("args")]
        role = ROLE_OF_COMMAND.get(container["args"][0])
        if role is None:
            continue
        port = _role_port(metrics, role)
        assert {"name": "metrics", "containerPort": port} in container["ports"], name
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port), name
        service = k8s_one("Service", name)
        assert {"name": "metrics", "port": port, "targetPort": "metrics"} in service["spec"][
            "ports"
        ], name


def test_prometheus_scrapes_each_compose_service_on_its_roles_port():
    metrics = validate_config(yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))).metrics
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["hub-connectors"]["static_configs"][0]["targets"] == [
        f"connectors:{_role_port(metrics, 'connector')}"
    ]
    assert jobs["hub-reconciler"]["dns_sd_configs"][0]["port"] == _role_port(metrics, "reconciler")
    assert jobs["hub-web"]["static_configs"][0]["targets"] == [
        f"web:{_role_port(metrics, 'serve')}"
    ]

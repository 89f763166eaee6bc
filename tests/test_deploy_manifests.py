"""Every deploy manifest parses and keeps the invariants the code relies on.

Kubernetes manifests (deploy/k8s/*.yaml), the compose file and the Grafana provisioning files are
parsed as YAML; the checks tie them to the code: topic names and partitions to schemas.topics,
the ClickHouse schema to schemas.ddl, LiftStream env variables to streams.settings.Settings,
the Grafana datasource uid to dashboards.build. Nothing here needs a cluster or a Docker engine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dashboards import build
from schemas.ddl import create_all
from schemas.topics import DEFAULT_PARTITIONS, KEEP_HISTORY, topic_names
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
LIFTSTREAM_IMAGE = "ghcr.io/liftstream/liftstream:"
ENV_PREFIX = Settings.model_config["env_prefix"]
SETTINGS_ENV = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
TOPICS = {name: DEFAULT_PARTITIONS for name in topic_names().values()}


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


K8S_FILES = sorted(K8S.glob("*.yaml"))
OBJECTS = [doc for f in K8S_FILES for doc in _docs(f)]
BY_KIND_NAME = {(o["kind"], o["metadata"]["name"]): o for o in OBJECTS}
COMPOSE = _docs(DEPLOY / "compose.yaml")[0]
WORKLOADS = [o for o in OBJECTS if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def _containers(obj: dict) -> list[dict]:
    pod = _pod(obj)
    return pod.get("initContainers", []) + pod["containers"]


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


def _topics_spec(text: str) -> dict[str, int]:
    return {name: int(n) for name, n in (item.split(":") for item in text.split())}


def test_every_manifest_parses_and_names_its_namespace():
    assert [f.name for f in K8S_FILES] == [
        "00-namespace.yaml",
        "10-kafka.yaml",
        "11-kafka-topics-job.yaml",
        "12-clickhouse.yaml",
        "13-triton.yaml",
        "20-worker.yaml",
        "21-api.yaml",
        "22-grafana.yaml",
    ]
    for obj in OBJECTS:
        assert {"apiVersion", "kind", "metadata"} <= set(obj), obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "liftstream", obj["metadata"]


def test_nothing_dumped_from_a_cluster():
    for f in [*K8S_FILES, DEPLOY / "compose.yaml"]:
        text = f.read_text()
        assert "creationTimestamp" not in text and "resourceVersion" not in text and "uid: " not in text, f
        for path, node in _walk(_docs(f)):
            assert node != {} or path[-1] in ("volumes", "emptyDir") or "volumes" in path, (f.name, path)
            assert not (path and path[-1] == "resources" and not node), (f.name, path)
    for obj in OBJECTS:
        assert "status" not in obj, obj["metadata"]["name"]


@pytest.mark.parametrize("obj", WORKLOADS, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_images_pinned_and_resources_set(obj):
    for c in _containers(obj):
        image = c["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.search(r"\d", tag) and tag != "latest" and "/" not in tag, image
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][part]), (c["name"], part)
        if obj["kind"] != "Job":  # long-running: the cluster must know when it is ready and alive
            assert c.get("readinessProbe") and c.get("livenessProbe"), c["name"]


def test_compose_images_pinned_and_limited():
    for name, svc in COMPOSE["services"].items():
        image = svc["image"]
        assert re.search(r":[^:/]*\d[^:/]*$", image) and not image.endswith(":latest"), (name, image)
        limits = svc["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
    k8s_images = {c["image"] for o in WORKLOADS for c in _containers(o)}
    assert {svc["image"] for svc in COMPOSE["services"].values()} == k8s_images


def test_kafka_is_kraft_with_three_brokers():
    sts = BY_KIND_NAME[("StatefulSet", "kafka")]
    assert sts["spec"]["replicas"] == 3
    (kafka,) = _pod(sts)["containers"]
    assert kafka["image"].startswith("apache/kafka:")
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert [v.split("@")[0] for v in voters] == ["0", "1", "2"]
    assert all(v.split("@")[1].startswith(f"kafka-{i}.kafka-headless.") for i, v in enumerate(voters))
    assert env["KAFKA_NODE_ID"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "ZOOKEEPER" not in str(env).upper()
    assert BY_KIND_NAME[("Service", "kafka-headless")]["spec"]["clusterIP"] == "None"


def test_topics_match_schemas_topics():
    job = BY_KIND_NAME[("Job", "kafka-topics")]
    (c,) = _pod(job)["containers"]
    assert _topics_spec(_env(c)["TOPICS"]) == TOPICS
    assert _topics_spec(COMPOSE["services"]["kafka-topics"]["environment"]["TOPICS"]) == TOPICS
    assert "--if-not-exists" in c["args"][0]


def test_input_history_is_kept():
    """The replay that rebuilds states (more partitions, a lost changelog) needs the whole input."""
    job = BY_KIND_NAME[("Job", "kafka-topics")]
    (c,) = _pod(job)["containers"]
    compose = COMPOSE["services"]["kafka-topics"]
    for env, script in ((_env(c), c["args"][0]), (compose["environment"], compose["command"][0])):
        assert env["KEEP_HISTORY"].split() == list(KEEP_HISTORY) == ["liftstream.events"]
        alter = script[script.index("KEEP_HISTORY") :]
        assert "kafka-configs.sh" in alter and "--add-config retention.ms=-1" in alter, script


def test_workers_scale_with_partitions_and_env_matches_settings():
    worker = BY_KIND_NAME[("Deployment", "liftstream-worker")]
    config = BY_KIND_NAME[("ConfigMap", "liftstream-config")]["data"]
    assert worker["spec"]["replicas"] == DEFAULT_PARTITIONS == int(config["LIFTSTREAM_TOPIC_PARTITIONS"])
    assert COMPOSE["services"]["worker"]["deploy"]["replicas"] == DEFAULT_PARTITIONS
    assert set(config) <= SETTINGS_ENV, set(config) - SETTINGS_ENV
    assert config["LIFTSTREAM_MODELS"] == "triton://triton:8001"
    assert config["LIFTSTREAM_KAFKA_BOOTSTRAP"] == "kafka:9092"
    Settings(**{k.removeprefix(ENV_PREFIX).lower(): v for k, v in config.items()})  # values validate
    (c,) = _pod(worker)["containers"]
    assert c["command"] == ["liftstream", "worker"]
    assert c["envFrom"] == [{"configMapRef": {"name": "liftstream-config"}}]


def test_liftstream_containers_use_only_settings_env():
    seen = 0
    for obj in WORKLOADS:
        for c in _containers(obj):
            if c["image"].startswith(LIFTSTREAM_IMAGE) and c["name"] != "export":
                names = set(_env(c))
                assert names and names <= SETTINGS_ENV, (c["name"], names - SETTINGS_ENV)
                assert _env(c)["LIFTSTREAM_STORE"] == {
                    "secretKeyRef": {"name": "liftstream-clickhouse", "key": "store-url"}
                }
                seen += 1
    assert seen == 2  # worker and api
    for name in ("worker", "api"):
        env = COMPOSE["services"][name]["environment"]
        assert set(env) <= SETTINGS_ENV, (name, set(env) - SETTINGS_ENV)
        assert env["LIFTSTREAM_STORE"].startswith("clickhouse://") and env["LIFTSTREAM_STORE"].endswith(
            "@clickhouse:9000/liftstream"
        )


def test_clickhouse_schema_is_schemas_ddl():
    sql = (DEPLOY / "clickhouse" / "01-schema.sql").read_text()
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--")).strip()
    expected = ";\n\n".join(create_all("liftstream")) + ";"
    assert body == expected, (
        "deploy/clickhouse/01-schema.sql is stale: regenerate it from schemas.ddl.create_all"
    )
    sts = BY_KIND_NAME[("StatefulSet", "clickhouse")]
    (c,) = _pod(sts)["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/docker-entrypoint-initdb.d"] == "schema"
    volumes = {v["name"]: v for v in _pod(sts)["volumes"]}
    assert volumes["schema"]["configMap"]["name"] == "clickhouse-schema"
    apply = (K8S / "apply.sh").read_text()
    assert "configmap clickhouse-schema --from-file=01-schema.sql=deploy/clickhouse/01-schema.sql" in apply
    assert (
        "./clickhouse/01-schema.sql:/docker-entrypoint-initdb.d/01-schema.sql:ro"
        in (COMPOSE["services"]["clickhouse"]["volumes"])
    )


def test_triton_on_gpus():
    dep = BY_KIND_NAME[("Deployment", "triton")]
    assert dep["spec"]["replicas"] >= 1
    (c,) = _pod(dep)["containers"]
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == 1
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert "--model-repository=/models/repository" in c["args"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in _pod(dep)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "triton-models"
    export = BY_KIND_NAME[("Job", "triton-export")]
    script = _pod(export)["containers"][0]["args"][0]
    assert "liftstream export-triton" in script and "--device gpu" in script
    assert "--python-path /models/python" in script
    assert BY_KIND_NAME[("PersistentVolumeClaim", "triton-models")]["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    ports = {p["name"]: p["port"] for p in BY_KIND_NAME[("Service", "triton")]["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}


def test_api_deployment_and_service():
    dep = BY_KIND_NAME[("Deployment", "liftstream-api")]
    (c,) = _pod(dep)["containers"]
    assert c["command"][:2] == ["liftstream", "api"] and "--port" in c["command"]
    port = int(c["command"][c["command"].index("--port") + 1])
    assert c["ports"] == [{"name": "http", "containerPort": port}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    svc = BY_KIND_NAME[("Service", "liftstream-api")]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_services_select_their_pods():
    for obj in OBJECTS:
        if obj["kind"] != "Service":
            continue
        selector = obj["spec"]["selector"]
        matches = [
            w for w in WORKLOADS if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, obj["metadata"]["name"]
        for w in matches:
            named = {p["name"] for c in _pod(w)["containers"] for p in c.get("ports", [])}
            for p in obj["spec"]["ports"]:
                assert p["targetPort"] in named, (obj["metadata"]["name"], p)


def test_grafana_provisions_the_datasource_dashboards_and_alerts():
    ds = _docs(DEPLOY / "grafana/provisioning/datasources/clickhouse.yaml")[0]["datasources"]
    assert [(d["uid"], d["type"]) for d in ds] == [(build.DATASOURCE_UID, build.DATASOURCE_TYPE)]
    assert ds[0]["jsonData"]["defaultDatabase"] == build.DATABASE
    provider = _docs(DEPLOY / "grafana/provisioning/dashboards/liftstream.yaml")[0]["providers"][0]
    dash_dir = provider["options"]["path"]
    dep = BY_KIND_NAME[("Deployment", "grafana")]
    (c,) = _pod(dep)["containers"]
    env = _env(c)
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", env["GF_INSTALL_PLUGINS"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v.get("configMap", {}).get("name") for v in _pod(dep)["volumes"]}
    assert volumes[mounts[dash_dir]] == "grafana-dashboards"
    assert volumes[mounts["/etc/grafana/provisioning/alerting"]] == "grafana-alerting"
    assert volumes[mounts["/etc/grafana/provisioning/datasources"]] == "grafana-datasources"
    apply = (K8S / "apply.sh").read_text()
    for f in (build.DASHBOARD_FILE, build.ALERT_RULES_FILE):
        assert (build.JSON_DIR / f).exists() and f"dashboards/json/{f}" in apply
        assert any(
            v.startswith(f"../dashboards/json/{f}:") for v in COMPOSE["services"]["grafana"]["volumes"]
        )
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{dash_dir}/{build.DASHBOARD_FILE}"

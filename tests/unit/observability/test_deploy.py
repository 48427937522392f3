"""Deployment assets, checked for structure since no cluster or Docker engine runs here: Kubernetes manifests,
the compose file, Prometheus' scrape config and the Grafana dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kefu.registry import service_names
from libs.common.settings import KefuSettings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
SERVICES = {"ingest", "trainer", "builder", "gateway", "feedback"}


def manifests() -> list[dict[str, Any]]:
    docs = [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, "no manifests"
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_every_manifest_is_a_known_kind_in_the_kefu_namespace() -> None:
    known = {
        "Namespace",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
    }
    for doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["kind"] in known, doc["kind"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "kefu", doc["metadata"]["name"]


def test_a_deployment_and_service_per_kefu_service_plus_triton_and_mlflow() -> None:
    deployments, services = by_kind("Deployment"), by_kind("Service")
    assert set(service_names()) == SERVICES
    assert SERVICES | {"triton", "mlflow"} <= set(deployments)
    assert set(deployments) == set(services)


def test_selectors_match_pod_labels_and_service_ports_exist() -> None:
    deployments = by_kind("Deployment")
    for name, svc in by_kind("Service").items():
        dep = deployments[name]
        selector = dep["spec"]["selector"]["matchLabels"]
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items(), name
        assert svc["spec"]["selector"].items() <= pod_labels.items(), name
        port_names = {p["name"] for p in container(dep)["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, (name, port)


@pytest.mark.parametrize("name", sorted(SERVICES | {"triton", "mlflow"}))
def test_resources_requests_within_limits(name: str) -> None:
    resources = container(by_kind("Deployment")[name])["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize("name", ["triton", "trainer"])
def test_gpu_workloads_request_a_gpu_on_gpu_nodes(name: str) -> None:
    dep = by_kind("Deployment")[name]
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert container(dep)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_cpu_services_stay_off_gpu_nodes() -> None:
    for name in SERVICES - {"trainer"}:
        dep = by_kind("Deployment")[name]
        assert "nodeSelector" not in dep["spec"]["template"]["spec"], name
        assert "nvidia.com/gpu" not in container(dep)["resources"]["limits"], name


def test_services_read_config_and_secret_that_exist() -> None:
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    assert "KEFU_KAFKA_BOOTSTRAP" in configmaps["kefu-config"]["data"]
    assert "KEFU_DATABASE_URL" in secrets["kefu-secrets"]["stringData"]
    for name in SERVICES:
        refs = container(by_kind("Deployment")[name])["envFrom"]
        assert {"configMapRef": {"name": "kefu-config"}} in refs and {"secretRef": {"name": "kefu-secrets"}} in refs


def test_gateway_hpa_scales_on_cpu_and_tokens_per_second() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["gateway"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    custom = metrics["Pods"]["pods"]["metric"]["name"]
    # The adapter rule that serves it derives it from the gateway's own counter.
    rules = yaml.safe_load(by_kind("ConfigMap")["kefu-prometheus-adapter-rules"]["data"]["rules.yaml"])["rules"]
    assert any(r["name"]["as"] == custom and "kefu_gateway_completion_tokens" in r["seriesQuery"] for r in rules)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_infrastructure_and_every_service() -> None:
    services = compose()["services"]
    infra = {"kafka", "postgres", "migrate", "mlflow", "triton", "prometheus", "grafana"}
    assert infra | SERVICES <= set(services)
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "nvcr.io/nvidia/tritonserver" in (ROOT / services["triton"]["build"]["dockerfile"]).read_text()
    for name in SERVICES:
        svc = services[name]
        assert svc["command"] == ["serve", name]
        assert svc["environment"]["KEFU_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for mount in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        assert (ROOT / mount.split(":")[0]).exists(), mount


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    from kefu.registry import service_settings

    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name in SERVICES:
        port = service_settings(name).endpoints()["http"].rsplit(":", 1)[1]
        assert f"{name}:{port}" in targets, name
    assert "triton:8002" in targets


def test_grafana_dashboard_has_the_panels_and_only_known_metrics() -> None:
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "kefu.json").read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert dash["uid"] == "kefu" and len(panels) >= 8
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "kefu_received_processed_messages_total",
        "kefu_published_messages_total",
        "kefu_dead_letters_total",
        "kefu_gateway_ttft_seconds_bucket",
        "kefu_gateway_time_per_output_token_seconds_bucket",
        "kefu_gateway_completion_tokens_total",
        "kefu_trainer_loss",
        "kefu_builder_gate_agreement",
        'destination="feedback.flagged"',
        "kefu_gateway_answers_total",
        "kefu_gateway_retrieval_confidence_bucket",
        "kefu_gateway_answer_characters_bucket",
        "kefu_feedback_flags_total",
    ):
        assert metric in exprs, metric
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"][0]
    assert all(t["datasource"]["uid"] == datasource["uid"] for p in panels for t in p["targets"])
    assert yaml.safe_load((provisioning / "dashboards" / "kefu.yaml").read_text())["providers"]


def _published_ports(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports", [])]


@pytest.mark.parametrize("name", ["mlflow", "grafana", "prometheus", "triton", "kafka"])
def test_compose_publishes_unauthenticated_tools_on_localhost_only(name: str) -> None:
    ports = _published_ports(compose()["services"][name])
    assert ports, name
    for port in ports:
        assert port.startswith("127.0.0.1:"), (name, port)  # never 0.0.0.0: no login in front of them


def test_compose_shows_the_kafka_security_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for var in (
        "KEFU_KAFKA_SECURITY_PROTOCOL",
        "KEFU_KAFKA_SASL_MECHANISM",
        "KEFU_KAFKA_SASL_USERNAME",
        "KEFU_KAFKA_SASL_PASSWORD",
        "KEFU_KAFKA_SSL_CAFILE",
        "KEFU_KAFKA_SSL_CERTFILE",
        "KEFU_KAFKA_SSL_KEYFILE",
    ):
        assert f"# {var}:" in text, var
        # Each one a real setting, so the commented example cannot drift from what the services read.
        assert var.removeprefix("KEFU_").lower() in KefuSettings.model_fields, var


def test_image_runs_as_a_non_root_user() -> None:
    lines = [line.strip() for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    assert lines.index(next(x for x in lines if x.startswith("USER "))) < lines.index("VOLUME /data")
    assert any("chown" in line and "/data" in line for line in lines)  # the volume is writable by that user


@pytest.mark.parametrize("name", sorted(SERVICES | {"mlflow"}))
def test_kefu_pods_run_as_non_root(name: str) -> None:
    pod = by_kind("Deployment")[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001

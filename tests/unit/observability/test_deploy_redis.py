"""Redis for the gateway's shared rate limits in both deployments, checked by parsing them (no Docker engine or cluster
here): it is defined, reachable only inside, and every gateway replica is pointed at it through KEFU_REDIS_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[3]


def compose_services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def k8s(kind: str) -> dict[str, dict[str, Any]]:
    docs = [d for p in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def redis_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.scheme == "redis" and parts.hostname and parts.port, url
    return parts.hostname, parts.port


def test_compose_defines_redis_and_the_gateway_uses_it() -> None:
    services = compose_services()
    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    assert "ports" not in redis  # rate-limit state has no business outside the compose network
    assert redis["healthcheck"]["test"][-1] == "ping"
    assert "--maxmemory" in redis["command"]  # bounded however many distinct keys arrive

    gateway = services["gateway"]
    host, port = redis_target(gateway["environment"]["KEFU_REDIS_URL"])
    assert (host, port) == ("redis", 6379)  # the service name on the compose network, Redis's own port
    assert gateway["depends_on"]["redis"] == {"condition": "service_healthy"}
    # The override keeps the shared settings (a bare `environment:` would have replaced them all).
    assert gateway["environment"]["KEFU_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert gateway["environment"]["KEFU_DATABASE_URL"].startswith("postgresql+asyncpg://")


def test_the_compose_url_is_one_the_gateway_accepts_and_does_not_start_its_own() -> None:
    from services.gateway.settings import Settings
    from services.gateway.sidecars import local_redis_port

    url = compose_services()["gateway"]["environment"]["KEFU_REDIS_URL"]
    assert Settings(redis_url=url).redis_url == url
    assert local_redis_port(url) is None  # another host: the gateway uses it, no embedded redis-server


def test_k8s_runs_redis_and_every_gateway_replica_points_at_its_service() -> None:
    deployment, service = k8s("Deployment")["redis"], k8s("Service")["redis"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].startswith("redis:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["memory"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    gateway = k8s("Deployment")["gateway"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in gateway["env"]}
    host, port = redis_target(env["KEFU_REDIS_URL"])
    assert host == service["metadata"]["name"]
    assert port in {p["port"] for p in service["spec"]["ports"]}
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert all(container_ports[p["targetPort"]] == 6379 for p in service["spec"]["ports"])

"""The Helm chart (deploy/helm/driftwarden): `helm lint` and `helm template` pass, and the rendered manifests are what a
cluster needs — a StatefulSet with the state on a volume, probes on /livez and /readyz, non-root and a read-only
root filesystem, Secret references (never values), the app.kubernetes.io labels, and, when asked, a ServiceMonitor
and PrometheusRule that promtool accepts. The rendered config file is read by the daemon's own settings loader."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from driftwarden.daemon.config import Settings
from driftwarden.policies.loader import load_policy

from tests.conftest import ROOT
from tests.shipping.tools import helm, system_tool

CHART = ROOT / "deploy" / "helm" / "driftwarden"
POLICY = (ROOT / "examples" / "credit" / "policy.yaml").read_text()
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)


def _template(tmp_path: Path, values: dict[str, Any], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [helm(), "template", "dw", str(CHART), "--namespace", "ml", "-f", str(file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


def _objects(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


FULL = {
    "replicaCount": 3,
    "policies": {"credit.yaml": POLICY},
    "env": {"DRIFTWARDEN_BATCH_SIZE": "500"},
    "secrets": {
        "token": {"secretName": "dw-admin", "key": "token"},
        "kafka": {
            "secretName": "kafka-credentials",
            "keys": {"sasl_plain_username": "username", "sasl_plain_password": "password"},
        },
    },
    "config": {
        "source": {
            "kind": "kafka",
            "bootstrap": "kafka.ml:9092",
            "topics": ["predictions", "labels"],
            "group_id": "driftwarden",
            "changelog_topic": "driftwarden-changelog",
            "settings": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
        }
    },
    "serviceMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
}


def test_helm_lint_passes() -> None:
    done = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    values = CHART / "values.yaml"
    done = subprocess.run(
        [helm(), "lint", "--strict", str(CHART), "--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and values.exists(), done.stdout + done.stderr


def test_the_rendered_manifests(tmp_path: Path) -> None:
    objects = _objects(_template(tmp_path, FULL).stdout)
    kinds = sorted(kind for kind, _ in objects)
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor"]
        + ["StatefulSet"]
    )
    for obj in objects.values():
        labels = obj["metadata"]["labels"]
        assert all(label in labels for label in RECOMMENDED_LABELS), (obj["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == "dw" and labels["app.kubernetes.io/name"] == "driftwarden"

    sts = objects[("StatefulSet", "dw-driftwarden")]
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["serviceName"] == "dw-driftwarden-headless"
    assert ("Service", "dw-driftwarden-headless") in objects
    assert objects[("Service", "dw-driftwarden-headless")]["spec"]["clusterIP"] == "None"
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30  # the daemon's bounded stop (systemd: the same)
    (container,) = pod["spec"]["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "--http" in container["args"] and "0.0.0.0:8080" in container["args"]

    # The state folder on a persistent volume, one claim per replica; config and policies read-only.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["state"]["mountPath"] == "/var/lib/driftwarden"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state" and claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert mounts["config"]["readOnly"] and mounts["policies"]["readOnly"]
    assert mounts["tmp"]["mountPath"] == "/tmp"  # writable scratch under a read-only root

    # Secrets by reference only.
    env = {e["name"]: e for e in container["env"]}
    assert env["DRIFTWARDEN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "dw-admin", "key": "token"}
    password = env["DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "kafka-credentials", "key": "password"}
    assert "value" not in password
    assert env["DRIFTWARDEN_BATCH_SIZE"]["value"] == "500"

    # The config file as the daemon reads it, with the container's environment on top.
    config_map = objects[("ConfigMap", "dw-driftwarden")]
    policies_map = objects[("ConfigMap", "dw-driftwarden-policies")]
    root = tmp_path / "etc"
    (root / "policies").mkdir(parents=True)
    (root / "config.yaml").write_text(config_map["data"]["config.yaml"])
    for name, text in policies_map["data"].items():
        (root / "policies" / name).write_text(text)
        assert load_policy(root / "policies" / name).spec.model == "credit"
    container_env = {k: e["value"] for k, e in env.items() if "value" in e}
    container_env["DRIFTWARDEN_SOURCE__SETTINGS__SASL_PLAIN_PASSWORD"] = "from-the-secret"
    settings = Settings.load(root / "config.yaml", env=container_env)
    assert settings.state_dir == Path("/var/lib/driftwarden") and settings.batch_size == 500
    assert settings.policies == [Path("/etc/driftwarden/policies/credit.yaml")]
    assert settings.source.kind == "kafka" and settings.source.changelog_topic == "driftwarden-changelog"
    assert settings.source.settings["sasl_plain_password"] == "from-the-secret"
    annotations = pod["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64  # a config change rolls the pods

    monitor = objects[("ServiceMonitor", "dw-driftwarden")]
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]


def test_the_prometheus_rules_are_valid_and_cover_the_daemons_health(tmp_path: Path) -> None:
    promtool = system_tool("promtool")
    rule = _objects(_template(tmp_path, FULL).stdout)[("PrometheusRule", "dw-driftwarden")]
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {
        "DriftwardenDown",
        "DriftwardenKafkaLagGrowing",
        "DriftwardenCheckpointsFailing",
        "DriftwardenDeadLettersRising",
    }
    assert "driftwarden_kafka_consumer_lag" in alerts["DriftwardenKafkaLagGrowing"]["expr"]
    assert "driftwarden_last_checkpoint_timestamp_seconds" in alerts["DriftwardenCheckpointsFailing"]["expr"]
    assert "driftwarden_dead_letters_total" in alerts["DriftwardenDeadLettersRising"]["expr"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_defaults_render_and_scale_out_needs_a_changelog(tmp_path: Path) -> None:
    objects = _objects(_template(tmp_path, {}).stdout)
    assert ("ServiceMonitor", "dw-driftwarden") not in objects and ("PrometheusRule", "dw-driftwarden") not in objects
    container = objects[("StatefulSet", "dw-driftwarden")]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("DRIFTWARDEN_SOURCE__SETTINGS__") for e in container["env"])
    values = {"replicaCount": 2, "config": {"source": {"changelog_topic": None}}}  # null removes the default
    done = _template(tmp_path, values, check=False)
    assert done.returncode != 0 and "changelog_topic" in done.stderr


@pytest.mark.parametrize("key", ["sasl_plain_password", "ssl_password"])
def test_no_secret_value_can_be_put_in_the_chart(tmp_path: Path, key: str) -> None:
    values = {"secrets": {"kafka": {"secretName": "", "keys": {key: "password"}}}}
    done = _template(tmp_path, values, check=False)
    assert done.returncode != 0 and "secrets.kafka.secretName" in done.stderr

"""The chart's Deployments run as podman containers, as a kubelet would run their pods.

Why not ``podman kube play``: podman 4.3 (Debian 12) supports only HostPath, ConfigMap,
EmptyDir and PersistentVolumeClaim volumes ("failed to create volume "mesh-secrets": HostPath,
ConfigMap, EmptyDir, and PersistentVolumeClaim are currently the only supported
VolumeSource"), and the chart mounts its Secrets as a projected volume. So each container of a
rendered pod spec becomes one ``podman run`` with the same command, args, env, envFrom,
volume mounts and security context. What stands in for the cluster, and nothing else:

- network: the host's (no CNI networking here). Every Service name resolves to 127.0.0.1
  (``--add-host``), so pods that share a port number need distinct ones (the values overlay
  gives each code server its own ``codeServer.port``);
- Secrets: a dict of name -> {key: value}; ``secretKeyRef`` env goes through a 0600 env file,
  a projected Secret becomes files with the projection's mode; a missing Secret or key stops
  the pod before it starts, naming them, as the kubelet does (CreateContainerConfigError);
- ConfigMaps from the rendered chart (mounted read-only, ``subPath`` included), ``emptyDir`` a
  fresh directory (mode 1777 like the kubelet's), a PersistentVolumeClaim a given directory;
- the security context as OpenShift's restricted-v2 applies it: ``--user`` from
  runAsUser:runAsGroup, ``readOnlyRootFilesystem`` as ``--read-only`` without podman's extra
  tmpfs mounts, ``capabilities.drop: [ALL]`` as ``--cap-drop ALL``, no privilege escalation as
  ``no-new-privileges``, podman's default seccomp profile for RuntimeDefault.
One replica per Deployment is started. Not applied: probes (the test runs each container's
startup probe command with ``podman exec``; readiness and liveness probes are not run) and
resource requests and limits. Container logs are read with every Secret value replaced by
``***``; the containers and their files (env files, Secret files) are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mesh_assets import image

LOCALHOST = "127.0.0.1"


class PodStartError(RuntimeError):
    """The pod cannot start (what the kubelet would report for it)."""


@dataclass
class Cluster:
    """The objects a rendered chart refers to, and the containers started from it."""

    docs: list[dict]
    secrets: dict[str, dict[str, str]]
    claims: dict[str, Path]
    workdir: Path
    started: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def config_map(self, name: str) -> dict[str, str]:
        found = [d for d in self.of_kind("ConfigMap") if d["metadata"]["name"] == name]
        if not found:
            raise PodStartError(f'configmap "{name}" not found')
        return found[0].get("data") or {}

    def secret_value(self, name: str, key: str) -> str:
        if name not in self.secrets:
            raise PodStartError(f'secret "{name}" not found')
        if key not in self.secrets[name]:
            raise PodStartError(f'couldn\'t find key {key} in Secret "{name}"')
        return self.secrets[name][key]

    def service_hosts(self) -> list[str]:
        return [f"{s['metadata']['name']}:{LOCALHOST}" for s in self.of_kind("Service")]

    def start(self, deployment: dict, skip: frozenset[str] = frozenset()) -> list[str]:
        """Start one replica of ``deployment``: a container per container of its pod spec but
        those named in ``skip`` (the test says why), with the volumes they mount."""
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        pod_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        containers = [c for c in pod["containers"] if c["name"] not in skip]
        mounted = {m["name"] for c in containers for m in c.get("volumeMounts", [])}
        mounts = self._volumes([v for v in pod.get("volumes", []) if v["name"] in mounted], pod_dir)
        names = []
        for container in containers:
            args = self._run_args(pod, container, mounts, pod_dir)
            cname = f"{name}-{container['name']}"
            image.podman("run", "--detach", "--replace", "--name", cname, *args)
            self.started.append(cname)
            names.append(cname)
        return names

    def logs(self, container: str) -> str:
        """The container's output, every Secret value replaced by ``***``."""
        result = image.podman("logs", container, check=False)
        return self.redact((result.stdout or "") + (result.stderr or ""))

    def redact(self, text: str) -> str:
        for value in sorted(
            (v for data in self.secrets.values() for v in data.values()), key=len, reverse=True
        ):
            for line in filter(None, value.splitlines()):
                text = text.replace(line, "***")
        return text

    def remove_all(self) -> None:
        for container in self.started:
            image.podman("rm", "--force", "--time", "5", container, check=False)
        self.started.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)  # env files and Secret files with it

    # --- the pod spec, translated -----------------------------------------------------------

    def _volumes(self, volumes: list[dict], pod_dir: Path) -> dict[str, Path]:
        """Each volume as a host path (a directory, with a file per ConfigMap or Secret key)."""
        paths = {}
        for volume in volumes:
            path = pod_dir / "volumes" / volume["name"]
            path.mkdir(parents=True)
            if "emptyDir" in volume:
                path.chmod(0o1777)
            elif "configMap" in volume:
                for key, value in self.config_map(volume["configMap"]["name"]).items():
                    (path / key).write_text(value)
                    (path / key).chmod(0o644)
            elif "projected" in volume:
                mode = volume["projected"].get("defaultMode", 0o644)
                for source in volume["projected"]["sources"]:
                    self._secret_files(path, source["secret"]["name"], source["secret"].get("items"), mode)
            elif "secret" in volume:
                secret = volume["secret"]
                mode = secret.get("defaultMode", 0o644)
                self._secret_files(path, secret["secretName"], secret.get("items"), mode)
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:
                    raise PodStartError(f'persistentvolumeclaim "{claim}" not found')
                path.rmdir()
                path = self.claims[claim]
            else:
                raise PodStartError(f"volume {volume['name']}: type {sorted(volume)} not run here")
            paths[volume["name"]] = path
        return paths

    def _secret_files(self, path: Path, name: str, items: list[dict] | None, mode: int) -> None:
        if items is None:  # every key of the Secret, as a file named after it
            if name not in self.secrets:
                raise PodStartError(f'secret "{name}" not found')
            items = [{"key": k, "path": k} for k in self.secrets[name]]
        for item in items:
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.secret_value(name, item["key"]))
            target.chmod(mode)

    def _run_args(self, pod: dict, container: dict, mounts: dict[str, Path], pod_dir: Path) -> list[str]:
        pod_sc = pod.get("securityContext") or {}
        sc = {**pod_sc, **(container.get("securityContext") or {})}
        user = sc.get("runAsUser")
        if user is None or int(user) == 0:
            raise PodStartError(f"{container['name']}: runAsUser {user}: the SCC assigns a non-root UID")
        args = ["--network", "host", "--user", f"{user}:{sc.get('runAsGroup', 0)}"]
        args += [f"--add-host={h}" for h in self.service_hosts()]
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("capabilities", {}).get("drop") == ["ALL"]:
            args += ["--cap-drop", "ALL"]
        for cap in sc.get("capabilities", {}).get("add", []):
            args += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        env_file = pod_dir / f"{container['name']}.env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self._env(container).items()))
        args += ["--env-file", str(env_file)]
        for mount in container.get("volumeMounts", []):
            source = mounts[mount["name"]]
            if "subPath" in mount:
                source = source / mount["subPath"]
            options = "ro" if mount.get("readOnly") else "rw"
            args += ["--volume", f"{source}:{mount['mountPath']}:{options}"]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        command, rest = container.get("command"), container.get("args", [])
        if command:
            args += ["--entrypoint", json.dumps(command)]
        return [*args, container["image"], *rest]

    def _env(self, container: dict) -> dict[str, str]:
        """envFrom first, then env (later entries win), as the kubelet resolves them."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(self.config_map(source["configMapRef"]["name"]))
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = str(var["value"])
                continue
            ref = var["valueFrom"]
            if "secretKeyRef" in ref:
                env[var["name"]] = self.secret_value(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            elif "configMapKeyRef" in ref:
                cm = ref["configMapKeyRef"]
                env[var["name"]] = self.config_map(cm["name"])[cm["key"]]
            else:
                raise PodStartError(f"env {var['name']}: {sorted(ref)} not run here")
        for name, value in env.items():
            if "\n" in value:
                raise PodStartError(f"env {name}: a multi-line value cannot go through an env file")
        return env


def fresh_dir(path: Path) -> Path:
    """An empty directory every UID can write (the landing claim, as a shared volume is)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o1777)
    return path


def make_readable(path: Path) -> None:
    """Files landed by the host, readable by the pods' arbitrary UID."""
    for root, dirs, files in os.walk(path):
        for d in dirs:
            Path(root, d).chmod(0o1777)
        for f in files:
            p = Path(root, f)
            p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH)

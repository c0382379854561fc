"""The Trino cluster's layout and configuration, without starting it: worker ports from
``MESH_TRINO_WORKER_PORT``, refusals that name the variable, and what each node's etc/ says."""

from __future__ import annotations

import pytest

from mesh_assets.stack.layout import StackError, StackLayout
from mesh_assets.stack.trino import Trino, TrinoWorker


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("MESH_STACK_DIR", str(tmp_path / "stack"))
    for name in ("MESH_TRINO_WORKERS", "MESH_TRINO_WORKER_PORT", "MESH_TRINO_WORKER_HEAP", "MESH_TRINO_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_workers_get_ports_counting_up_from_the_base(env):
    env.setenv("MESH_TRINO_WORKERS", "3")
    env.setenv("MESH_TRINO_WORKER_PORT", "38090")
    layout = StackLayout.from_env()
    assert layout.trino_workers == ["trino-worker-1", "trino-worker-2", "trino-worker-3"]
    assert [layout.ports[w] for w in layout.trino_workers] == [38090, 38091, 38092]


def test_no_workers_by_default(env):
    layout = StackLayout.from_env()
    assert layout.trino_workers == []
    assert "trino-worker-1" not in layout.ports


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"MESH_TRINO_WORKERS": "two"}, "MESH_TRINO_WORKERS='two': expected a number of workers (0 or more)"),
        (
            {"MESH_TRINO_WORKERS": "1", "MESH_TRINO_WORKER_PORT": "0"},
            "MESH_TRINO_WORKER_PORT='0': expected a TCP port",
        ),
        (
            {"MESH_TRINO_WORKERS": "3", "MESH_TRINO_WORKER_PORT": "65534"},
            "MESH_TRINO_WORKER_PORT + MESH_TRINO_WORKERS - 1='65536': expected a TCP port",
        ),
        (
            {"MESH_TRINO_WORKERS": "2", "MESH_TRINO_WORKER_PORT": "8079"},
            "port 8080 is configured for two services (trino (MESH_TRINO_PORT), "
            "trino-worker-2 (MESH_TRINO_WORKER_PORT)): give each its own",
        ),
    ],
)
def test_bad_worker_settings_are_refused_by_name(env, variables, message):
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(StackError) as err:
        StackLayout.from_env()
    assert message in str(err.value)


def test_coordinator_and_workers_share_catalog_and_secret_but_not_identity(env, tmp_path):
    env.setenv("MESH_TRINO_WORKERS", "2")
    env.setenv("MESH_TRINO_WORKER_HEAP", "1536M")
    layout = StackLayout.from_env()
    server = tmp_path / "server"
    coordinator = Trino(layout).config_files(server)
    workers = [TrinoWorker(layout, n).config_files(server) for n in (1, 2)]

    assert "node-scheduler.include-coordinator=false\n" in coordinator["config.properties"]
    for n, files in enumerate(workers, 1):
        config = files["config.properties"].splitlines()
        assert config == [
            "coordinator=false",
            f"http-server.http.port={8089 + n}",
            "discovery.uri=http://127.0.0.1:8080",
            "internal-communication.shared-secret=${ENV:MESH_STACK_TRINO_SHARED_SECRET}",
            f"plugin.dir={server / 'plugin'}",
            "catalog.management=static",
        ]
        assert files["catalog/iceberg.properties"] == coordinator["catalog/iceberg.properties"]
        assert "-Xmx1536M\n" in files["jvm.config"]
        assert f"node.data-dir={layout.root / 'trino' / f'worker-{n}' / 'data'}\n" in files["node.properties"]
        # no client port, logins or access control on a worker
        assert set(files) == {
            "node.properties",
            "config.properties",
            "log.properties",
            "catalog/iceberg.properties",
            "jvm.config",
        }
    assert "-Xmx3G\n" in coordinator["jvm.config"]
    ids = [TrinoWorker(layout, n).node_id() for n in (1, 2)] + [Trino(layout).node_properties()["node.id"]]
    assert len(set(ids)) == 3
    # a node keeps its id from one start to the next
    assert TrinoWorker(layout, 1).node_id() == ids[0]


def test_a_single_node_schedules_on_itself(env, tmp_path):
    config = Trino(StackLayout.from_env()).config_files(tmp_path)["config.properties"]
    assert "node-scheduler.include-coordinator=true\n" in config


def test_the_started_stack_knows_its_workers_whatever_the_environment_says_now(env):
    env.setenv("MESH_TRINO_WORKERS", "2")
    started = StackLayout.from_env()
    started.ensure_dirs()
    started.write_state()
    for now in ("0", "3", None):
        if now is None:
            env.delenv("MESH_TRINO_WORKERS")
        else:
            env.setenv("MESH_TRINO_WORKERS", now)
        current = StackLayout.current()
        assert current.trino_workers == ["trino-worker-1", "trino-worker-2"]
        assert current.ports == started.ports

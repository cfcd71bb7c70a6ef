"""scripts/lambda-local: the OCI runtime that runs containers as Lambda does, the base image's bootstrap, the runtime
version every artifact agrees on, and the smoke run's map of events/ to functions."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from video_ai.local.resources import load_template

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "scripts/lambda-local"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), HERE / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _podman_spec(env: list[str]) -> dict[str, Any]:
    """The parts of a config.json that podman writes and the OCI runtime edits."""
    return {
        "process": {"user": {"uid": 0, "gid": 0}, "env": env,
                    "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]}},
        "root": {"path": "/var/lib/containers/x/merged", "readonly": False},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev/shm", "type": "bind", "source": "/run/x/shm", "options": ["bind"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/var/task", "type": "bind", "source": "/repo/.aws-sam/build/ApiFunction",
             "options": ["rbind", "ro"]},
        ],
        "linux": {"resources": {"memory": {"limit": 1024 * 2**20}}},
    }


def test_a_lambda_container_runs_as_lambda_runs_it(tmp_path: Path) -> None:
    oci = _module("oci-lambda")
    config = {"tmp_dir": str(tmp_path), "env": {"AWS_ENDPOINT_URL": "http://10.0.2.2:5000", "X": "new"}}
    spec = oci.as_lambda(_podman_spec(["AWS_LAMBDA_FUNCTION_NAME=ApiFunction", "X=old"]), config)
    assert spec["process"]["user"] == {"uid": 993, "gid": 990, "additionalGids": []}
    assert spec["process"]["noNewPrivileges"] is True
    assert all(caps == [] for caps in spec["process"]["capabilities"].values())
    assert spec["root"]["readonly"] is True
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert "/dev/shm" not in mounts and mounts["/tmp"]["source"] == str(tmp_path) and "rw" in mounts["/tmp"]["options"]
    assert mounts["/var/task"]["options"] == ["rbind", "ro"] and "/proc" in mounts
    assert spec["process"]["env"].count("X=new") == 1 and "X=old" not in spec["process"]["env"]
    assert oci.describe(spec, "ApiFunction") == {
        "function": "ApiFunction", "uid": 993, "gid": 990, "readonly_root": True, "memory_mb": 1024,
        "bind_mounts": ["/tmp", "/var/task"],
    }


@pytest.mark.parametrize("lambda_env", [True, False])
def test_the_runtime_edits_only_lambda_containers_then_hands_over_to_runc(tmp_path: Path, lambda_env: bool) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    env = ["PATH=/usr/bin"] + (["AWS_LAMBDA_FUNCTION_NAME=WorkerFunction"] if lambda_env else [])
    original = _podman_spec(env)
    (bundle / "config.json").write_text(json.dumps(original))
    runc = tmp_path / "runc"
    runc.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/runc-args\n')
    runc.chmod(0o755)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"runc": str(runc), "tmp_dir": str(tmp_path / "t"), "log": str(tmp_path / "log"),
                                  "env": {}}))
    args = ["--root", "/run/runc", "create", "--bundle", str(bundle), "--pid-file", "p", "cid"]
    subprocess.run([sys.executable, str(HERE / "oci-lambda.py"), *args], check=True,
                   env={**os.environ, "VAI_LAMBDA_CONFIG": str(config)})
    assert (tmp_path / "runc-args").read_text().split() == args
    spec = json.loads((bundle / "config.json").read_text())
    if lambda_env:
        assert spec["root"]["readonly"] is True and spec["process"]["user"]["uid"] == 993
        assert json.loads((tmp_path / "log").read_text())["function"] == "WorkerFunction"
    else:
        assert spec == original and not (tmp_path / "log").exists()


def test_the_bootstrap_gives_the_function_lambdas_sys_path(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    (runtime / "awslambdaric").mkdir(parents=True)
    (runtime / "awslambdaric/__init__.py").write_text("")
    # awslambdaric's `python -m awslambdaric <handler>` entry point, recording what it was started with, then asking
    # for the first event as the real one does after importing the handler.
    (runtime / "awslambdaric/lambda_runtime_client.py").write_text(
        "class BaseLambdaRuntimeClient:\n"
        "    def wait_next_invocation(self):\n"
        "        return 'event'\n"
    )
    (runtime / "awslambdaric/__main__.py").write_text(
        "import json, os, sys\n"
        "from .lambda_runtime_client import BaseLambdaRuntimeClient\n"
        "def main(args):\n"
        f"    open({str(tmp_path / 'ran')!r}, 'w').write(json.dumps([os.getcwd(), args[1:], sys.path]))\n"
        "    assert BaseLambdaRuntimeClient().wait_next_invocation() == 'event'\n"
        "    assert BaseLambdaRuntimeClient().wait_next_invocation() == 'event'\n"
    )
    task = tmp_path / "task"
    task.mkdir()
    env = {**os.environ, "LAMBDA_TASK_ROOT": str(task), "LAMBDA_RUNTIME_DIR": str(runtime),
           "_HANDLER": "handler.handler", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
    result = subprocess.run([sys.executable, str(HERE / "base/bootstrap.py")], check=True, env=env,
                            capture_output=True, text=True)
    # Lambda's INIT_REPORT, once, when the runtime first asks for an event.
    assert re.fullmatch(r"INIT_REPORT Init Duration: \d+\.\d\d ms Phase: init Status: success\n", result.stdout)
    cwd, args, path = json.loads((tmp_path / "ran").read_text())
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert (cwd, args) == (str(task), ["handler.handler"])
    assert path[:3] == [str(task), f"/opt/python/lib/{version}/site-packages", "/opt/python"]
    assert path[-1] == str(runtime)


def test_the_entrypoint_wants_exactly_the_handler() -> None:
    result = subprocess.run(["sh", str(HERE / "base/lambda-entrypoint.sh")], capture_output=True, text=True)
    assert result.returncode == 142 and "handler name" in result.stderr


def test_every_artifact_runs_one_python_version() -> None:
    # template.yaml's runtime, the worker image's base, the layer's wheels and byte-code, docker-compose's image and
    # the Debian release the local base image takes its interpreter from must all be one version.
    template = load_template(ROOT / "template.yaml")
    runtimes = {props["Runtime"] for props in (r.get("Properties", {}) for r in template["Resources"].values())
                if "Runtime" in props}
    runtimes |= set(template["Resources"]["SharedLayer"]["Properties"]["CompatibleRuntimes"])
    assert len(runtimes) == 1
    version = runtimes.pop().removeprefix("python")
    assert f"FROM public.ecr.aws/lambda/python:{version}\n" in (ROOT / "functions/worker/Dockerfile").read_text()
    makefile = (ROOT / "layers/shared/Makefile").read_text()
    assert f"PY_VERSION ?= {version}\n" in makefile and f"PYTHON ?= python{version}\n" in makefile
    assert f"python:{version}-slim" in (ROOT / "docker-compose.yml").read_text()
    script = (ROOT / "scripts/lambda-local.sh").read_text()
    assert re.search(rf"^\s+{re.escape(version)}\) SUITE=\w+ ;;$", script, re.M)


def test_the_smoke_run_maps_every_event_file_to_a_function() -> None:
    smoke = _module("smoke")
    template = load_template(ROOT / "template.yaml")
    assert set(smoke.EVENT_FUNCTIONS) == {path.name for path in (ROOT / "events").glob("*.json")}
    assert set(smoke.EVENT_FUNCTIONS.values()) <= set(template["Resources"])
    assert smoke.memory_size("WorkerFunction") == template["Parameters"]["WorkerMemorySize"]["Default"]


def test_the_template_variants_are_one_change_away_from_what_is_deployed() -> None:
    variants = _module("variants")
    text = (ROOT / "template.yaml").read_text()
    native = variants.native(text, Path("/repo"))
    changed = [(a, b) for a, b in zip(text.splitlines(), native.splitlines(), strict=True) if a != b]
    assert changed and all(
        re.search(r"Architectures: \[arm64\]|BuildArchitecture: arm64|(CodeUri|ContentUri|DockerContext): ", a)
        for a, _ in changed
    )
    native_template = load_template_text(native)
    for name in variants.ZIP_FUNCTIONS:
        props = native_template["Resources"][name]["Properties"]
        assert props["Architectures"] == ["x86_64"] and props["CodeUri"].startswith("/repo/functions/")
    assert native_template["Resources"]["SharedLayer"]["Properties"]["ContentUri"] == "/repo/layers/shared/"
    emulated = load_template_text(variants.emulated(text))
    original = load_template_text(text)
    for name, resource in original["Resources"].items():
        props = dict(emulated["Resources"][name].get("Properties", {}))
        if name in variants.ZIP_FUNCTIONS:
            assert props.pop("Timeout") == 300
            resource = {**resource, "Properties": {k: v for k, v in resource["Properties"].items() if k != "Timeout"}}
        assert props == resource.get("Properties", {}), name


def load_template_text(text: str) -> dict[str, Any]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        return load_template(Path(handle.name))

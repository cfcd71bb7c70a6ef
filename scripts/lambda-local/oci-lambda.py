"""An OCI runtime in front of runc that runs every Lambda function container the way Lambda runs it.

`sam local` starts containers as root with a writable root file system; Lambda never does. podman calls this program
(containers.conf `[engine] runtime`) with runc's arguments; for a container whose environment names a Lambda function
(`AWS_LAMBDA_FUNCTION_NAME`, which SAM sets), it edits the bundle's config.json before runc sees it:
  - user sbx_user1051 (993:990), no capabilities, no new privileges;
  - read-only root file system; /tmp is the only writable place (a host folder, so a smoke run can share the
    embedded vector engine between functions as a real deployment shares its Qdrant), and no /dev/shm (Lambda has
    none: multiprocessing's semaphores fail there too);
  - variables of the machine around the function (the AWS endpoint of a local moto server), never its own config.
Every other container (image builds) passes through untouched. Each Lambda container is recorded as one JSON line in
the log, so the smoke run can show the constraints were in force. Configured by the JSON file in $VAI_LAMBDA_CONFIG.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

LAMBDA_UID, LAMBDA_GID = 993, 990
NOT_ON_LAMBDA = {"/dev/shm", "/dev/mqueue"}


def _bundle(args: list[str]) -> Path | None:
    if "create" not in args and "run" not in args:
        return None
    for flag in ("--bundle", "-b"):
        if flag in args and args.index(flag) + 1 < len(args):
            return Path(args[args.index(flag) + 1])
    return None


def _function_name(spec: dict[str, Any]) -> str | None:
    for item in spec.get("process", {}).get("env", []):
        name, _, value = item.partition("=")
        if name == "AWS_LAMBDA_FUNCTION_NAME":
            return value
    return None


def as_lambda(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The container spec with Lambda's constraints applied (pure: the tests call it on sample specs)."""
    process = spec.setdefault("process", {})
    process["user"] = {"uid": LAMBDA_UID, "gid": LAMBDA_GID, "additionalGids": []}
    process["noNewPrivileges"] = True
    process["capabilities"] = {key: [] for key in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    env = [item for item in process.get("env", []) if item.partition("=")[0] not in config.get("env", {})]
    process["env"] = env + [f"{name}={value}" for name, value in config.get("env", {}).items()]
    spec.setdefault("root", {})["readonly"] = True
    mounts = [m for m in spec.get("mounts", []) if m.get("destination") not in NOT_ON_LAMBDA | {"/tmp"}]
    mounts.append({"destination": "/tmp", "type": "bind", "source": config["tmp_dir"],
                   "options": ["rbind", "rw", "nosuid", "nodev"]})
    spec["mounts"] = mounts
    return spec


def describe(spec: dict[str, Any], function: str) -> dict[str, Any]:
    """What the log records of one Lambda container."""
    limit = spec.get("linux", {}).get("resources", {}).get("memory", {}).get("limit")
    host_paths = sorted(
        m["destination"] for m in spec.get("mounts", []) if m.get("type") == "bind" or "bind" in m.get("options", [])
    )
    return {
        "function": function,
        "uid": spec["process"]["user"]["uid"],
        "gid": spec["process"]["user"]["gid"],
        "readonly_root": spec["root"]["readonly"],
        "memory_mb": limit // 2**20 if limit else None,
        "bind_mounts": host_paths,
    }


def main(argv: list[str]) -> None:
    config = json.loads(Path(os.environ["VAI_LAMBDA_CONFIG"]).read_text())
    bundle = _bundle(argv)
    if bundle is not None:
        spec_path = bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        function = _function_name(spec)
        if function is not None:
            spec = as_lambda(spec, config)
            spec_path.write_text(json.dumps(spec))
            with open(config["log"], "a", encoding="utf-8") as log:
                log.write(json.dumps(describe(spec, function)) + "\n")
    os.execv(config["runc"], [config["runc"], *argv])


if __name__ == "__main__":
    main(sys.argv[1:])

"""Start awslambdaric with the sys.path Lambda's Python runtime gives a function."""

import os
import sys


def main() -> None:
    task_root = os.environ.setdefault("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # Lambda's order: the function's code, then its layers (/opt), then site-packages, the runtime's own boto3 last.
    sys.path[:0] = [task_root, f"/opt/python/lib/{version}/site-packages", "/opt/python"]
    sys.path.append(runtime_dir)
    from awslambdaric import bootstrap

    bootstrap.run(task_root, os.environ["_HANDLER"], os.environ["AWS_LAMBDA_RUNTIME_API"])


if __name__ == "__main__":
    main()

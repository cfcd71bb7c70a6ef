"""Start awslambdaric with the working directory and sys.path Lambda's Python runtime gives a function."""

import os
import sys
import time


def _process_age_s() -> float:
    """Seconds since this process started (the RIE exec'd /var/runtime/bootstrap as this same process)."""
    with open("/proc/self/stat", encoding="ascii") as stat:
        started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")


def _report_init() -> None:
    """Print Lambda's INIT_REPORT line when the runtime first asks for an event: the Runtime Interface Emulator does
    not measure the init phase (its REPORT line's Init Duration is ~1 ms whatever the function imports)."""
    from awslambdaric.lambda_runtime_client import BaseLambdaRuntimeClient

    first = BaseLambdaRuntimeClient.wait_next_invocation

    def wait_next_invocation(self: BaseLambdaRuntimeClient) -> object:
        BaseLambdaRuntimeClient.wait_next_invocation = first  # type: ignore[method-assign]
        sys.stdout.write(f"INIT_REPORT Init Duration: {_process_age_s() * 1000:.2f} ms Phase: init Status: success\n")
        sys.stdout.flush()
        return first(self)

    BaseLambdaRuntimeClient.wait_next_invocation = wait_next_invocation  # type: ignore[method-assign]


def main() -> None:
    task_root = os.environ.setdefault("LAMBDA_TASK_ROOT", "/var/task")
    runtime_dir = os.environ.get("LAMBDA_RUNTIME_DIR", "/var/runtime")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # Lambda's order: the function's code, then its layers (/opt), then site-packages, the runtime's own boto3 last.
    sys.path[:0] = [task_root, f"/opt/python/lib/{version}/site-packages", "/opt/python"]
    sys.path.append(runtime_dir)
    os.chdir(task_root)
    _report_init()
    from awslambdaric.__main__ import main as run_client

    # As `python -m awslambdaric <handler>`: it reads AWS_LAMBDA_RUNTIME_API (and AWS_EXECUTION_ENV) itself.
    run_client([sys.argv[0], os.environ["_HANDLER"]])


if __name__ == "__main__":
    main()

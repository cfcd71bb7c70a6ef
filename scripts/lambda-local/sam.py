"""SAM CLI, with one change to the containers it starts: they join slirp4netns with the host's loopback reachable.

Run with SAM CLI's own interpreter: `<sam venv>/bin/python scripts/lambda-local/sam.py local invoke ...`.
Through podman's Docker-compatible API a container that names no network joins podman's bridge, whose only way to
the host is the bridge's address, and SAM CLI has no option to choose otherwise. With slirp4netns a function reaches
the services of the smoke run (moto, the clip server, the callback receiver) on the host's 127.0.0.1 as 10.0.2.2, and
SAM reaches the function through the port it publishes on 127.0.0.1: no traffic leaves loopback.
"""

import sys
from typing import Any

from docker.models.containers import ContainerCollection

NETWORK = "slirp4netns:allow_host_loopback=true"
_create = ContainerCollection.create


def _create_on_loopback(self: ContainerCollection, image: Any, command: Any = None, **kwargs: Any) -> Any:
    kwargs.setdefault("network_mode", NETWORK)
    return _create(self, image, command, **kwargs)


ContainerCollection.create = _create_on_loopback  # type: ignore[method-assign]

if __name__ == "__main__":
    from samcli.cli.main import cli

    sys.argv[0] = "sam"
    sys.exit(cli())

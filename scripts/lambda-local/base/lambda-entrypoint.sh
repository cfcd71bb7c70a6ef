#!/bin/sh
# AWS's entrypoint semantics: one argument, the handler; without a Runtime API (outside Lambda) start the Runtime
# Interface Emulator in front of the runtime's bootstrap, as `docker run -p 9000:8080 IMAGE handler` expects.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie $RUNTIME_ENTRYPOINT
else
  exec $RUNTIME_ENTRYPOINT
fi

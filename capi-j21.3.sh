#!/bin/bash
#$ -N capi-j21
#$ -o "/work/wt/w-sge/stdout.$JOB_ID.log"
#$ -e "/work/wt/w-sge/stderr.$JOB_ID.log"
#$ -wd /work/wt/w-sge
#$ -S /bin/bash
#$ -A capi-j21.3
#$ -V
CLUSTER_API_EXIT_FILE=/work/wt/w-sge/capi-j21.3.exit
trap 'echo "$?" > "$CLUSTER_API_EXIT_FILE"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
true

#!/bin/bash
#$ -N capi-j6
#$ -o "/work/wt/w-sge/stdout.$JOB_ID.log"
#$ -e "/work/wt/w-sge/stderr.$JOB_ID.log"
#$ -wd /work/wt/w-sge
#$ -S /bin/bash
#$ -A capi-j6.7
#$ -hold_jid 5
#$ -h
#$ -V
CLUSTER_API_EXIT_FILE=/work/wt/w-sge/capi-j6.7.exit
trap 'echo "$?" > "$CLUSTER_API_EXIT_FILE"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
true

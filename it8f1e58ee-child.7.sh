#!/bin/bash
#$ -N it8f1e58ee-child
#$ -o "/work/wt/w-sge/stdout.$JOB_ID.log"
#$ -e "/work/wt/w-sge/stderr.$JOB_ID.log"
#$ -wd /work/wt/w-sge
#$ -S /bin/bash
#$ -A it8f1e58ee-child.7
#$ -hold_jid 4
#$ -h
#$ -V
CLUSTER_API_EXIT_FILE=/work/wt/w-sge/it8f1e58ee-child.7.exit
trap 'echo "$?" > "$CLUSTER_API_EXIT_FILE"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
touch /tmp/pytest-of-root/pytest-733/test_endings_arrays_cancel_wal0/work/child.ran

# Sourced by bg.sh and t30a.sh, whose first call starts a job that outlives the call:
# `wait_job PID NAME LOG OUTLOG N` waits for it up to WAIT seconds (default 560; the same
# command called again within the machine's 30 s idle window waits on), says whether it
# finished, copies its log without the room workers' lines to OUTLOG and shows the last N.
wait_job() {
  local pid=$1 t0
  t0=$(date +%s)
  while kill -0 $pid 2> /dev/null && [ $(( $(date +%s) - t0 )) -lt ${WAIT:-560} ]; do sleep 5; done
  kill -0 $pid 2> /dev/null && echo "$2 still running after $(( $(date +%s) - t0 )) s" || echo "$2 finished"
  grep -v "gs4_ros.train.data" $3 > $4; tail -$5 $4
}

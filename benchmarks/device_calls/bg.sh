# Runs a longer job across several device calls on one warm machine: the first call starts
# `bash JOB` under setsid (it outlives the call) with $OUT pointed at /tmp/bg_out; every
# call, this same command again within the machine's 30 s idle window, waits up to WAIT
# seconds (default 560) and returns the job's log and what it wrote to /tmp/bg_out so far
# (the newest 7 files: $OUT brings back 8). Usage: JOB=benchmarks/device_calls/t31b.sh
# bash benchmarks/device_calls/bg.sh
[ -n "$JOB" ] || { echo "JOB= the script to run"; exit 2; }
if [ ! -f /tmp/bg.pid ]; then
  mkdir -p /tmp/bg_out
  OUT=/tmp/bg_out setsid nohup bash $JOB > /tmp/bg.log 2>&1 < /dev/null &
  echo $! > /tmp/bg.pid
  echo "started $JOB, pid $(cat /tmp/bg.pid)"
fi
source benchmarks/device_calls/wait_job.sh
wait_job $(cat /tmp/bg.pid) $JOB /tmp/bg.log $OUT/bg_log.txt 40
(cd /tmp/bg_out && find . -type f -printf '%T@ %P\n' | sort -rn | head -7 | cut -d' ' -f2) | while read f; do
  mkdir -p $OUT/$(dirname $f) && cp /tmp/bg_out/$f $OUT/$f
done
ls -laR $OUT

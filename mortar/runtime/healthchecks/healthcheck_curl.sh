#!/bin/sh
# healthcheck_curl: is an HTTP API answering? POSIX sh so it works in any image that has curl.
set -u

usage() {
    cat <<'USAGE'
usage: healthcheck_curl URL [--timeout SECONDS] [--expect CODES]

Fetch URL with curl and report whether the service answered.
  --timeout SECONDS  give up after this many seconds (default 5)
  --expect CODES     comma-separated HTTP codes that count as healthy, e.g. 200,300
                     (default: any code from 200 to 499, i.e. the API answered)
Exit 0 when healthy, 1 when not, with one line on stdout saying why.
USAGE
}

url=""
timeout=5
expect=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --timeout|--expect)
            if [ $# -lt 2 ]; then echo "unhealthy: $1 needs a value"; exit 1; fi
            if [ "$1" = --timeout ]; then timeout=$2; else expect=$2; fi
            shift 2 ;;
        --timeout=*) timeout=${1#*=}; shift ;;
        --expect=*) expect=${1#*=}; shift ;;
        -*) echo "unhealthy: unknown option $1 (see --help)"; exit 1 ;;
        *)
            if [ -n "$url" ]; then echo "unhealthy: more than one URL given"; exit 1; fi
            url=$1; shift ;;
    esac
done
if [ -z "$url" ]; then echo "unhealthy: no URL given (see --help)"; exit 1; fi

# Without -f curl succeeds on any HTTP answer; it fails only when nothing answered.
out=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$timeout" "$url" 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
    msg=$(printf '%s\n' "$out" | sed -n 's/^curl: //p' | head -n 1)
    echo "unhealthy: $url: ${msg:-curl exited with status $rc}"
    exit 1
fi
code=$out

if [ -n "$expect" ]; then
    case ",$expect," in
        *",$code,"*) echo "healthy: $url answered $code"; exit 0 ;;
        *) echo "unhealthy: $url answered $code, expected one of $expect"; exit 1 ;;
    esac
fi
case "$code" in
    2??|3??|4??) echo "healthy: $url answered $code"; exit 0 ;;
    *) echo "unhealthy: $url answered $code"; exit 1 ;;
esac

#!/usr/bin/env bash
# make lint: no tracked file is a built executable (ELF) or over 1 MB;
# build outputs belong in bin/ (ignored), test data is generated.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  if [ "$(stat -c %s "$f")" -gt 1048576 ]; then echo "tracked file over 1 MB: $f"; bad=1; fi
  if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then echo "tracked executable binary: $f"; bad=1; fi
done < <(git ls-files -z)
[ $bad = 0 ] && echo "tracked files: ok"
exit $bad

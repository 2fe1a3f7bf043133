#!/usr/bin/env bash
# How often the flat-kurtosis rule lays a modality evenly, with and without round 9's pooling: `acckv ask --json`'s
# per-layer `skeleton` (1.0 = laid evenly) on the first 10 validation clips of core and sparse, context, 5 % media.
# Output: results/validation-round-9/flat-layers.txt (bash results/validation-round-9/flat-layers.sh > that file).
set -euo pipefail
export HF_HUB_OFFLINE=1
# the clips: `eval` writes them into .acckv/synthavqa the first time (a full-cache run of 10 clips per suite)
acckv eval --suite core,sparse --split validation -n 10 -m full --protocols context --out-dir "$(mktemp -d)" \
  --data-dir .acckv/synthavqa -r none >/dev/null 2>&1
summarise() {
  python3 -c '
import collections, sys
count = collections.defaultdict(lambda: [0, 0])
for line in sys.stdin:
    suite, pooling, kind, share = line.split()
    count[(suite, pooling, kind)][0] += float(share) == 1.0
    count[(suite, pooling, kind)][1] += 1
print("# bash results/validation-round-9/flat-layers.sh: (layer, clip) pairs whose modality the flat-kurtosis rule laid")
print("# evenly (skeleton 1.0), first 10 validation clips per suite, context, 5 % media, 6 layers each")
print("suite\tpooling\tmodality\tlaid_evenly\tof\tpercent")
for key in sorted(count):
    print(*key, count[key][0], count[key][1], round(100 * count[key][0] / count[key][1], 1), sep="\t")'
}

for suite in core sparse; do
  dir=.acckv/synthavqa/validation; prefix=validation
  [ "$suite" = sparse ] && dir=.acckv/synthavqa/sparse/validation && prefix=sparse-validation
  for i in $(seq 0 9); do
    clip=$(printf "%s/%s-%06d.mp4" "$dir" "$prefix" "$i")
    for pooling in 1 3; do
      acckv ask "$clip" "What instrument plays?" -m "acckv:pooling=$pooling" -b 0.05 --protocol context --json \
        2>/dev/null | python3 -c '
import json, sys
report = json.loads(sys.stdin.readline())["report"]
for layer in report["layers"]:
    for kind, share in layer["skeleton"].items():
        print(sys.argv[1], sys.argv[2], kind, share)' "$suite" "$pooling"
    done
  done
done | summarise
